package loyalty_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// richProgram has category rates, three tiers, campaigns and a punch card.
func richProgram() loyalty.Program {
	p := loyalty.DefaultProgram()
	p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: 3}, {Category: "tobacco", PointsPerUnit: 0}}
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
		{ID: "member", Name: "Member", Threshold: 0, Multiplier: 1000},
		{ID: "silver", Name: "Silver", Threshold: 50000, Multiplier: 1500},
		{ID: "gold", Name: "Gold", Threshold: 200000, Multiplier: 2000},
	}}
	p.Campaigns = []loyalty.Campaign{
		{ID: "double-weekend", Name: "Double points weekend", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Days: []string{"sat", "sun"}, Multiplier: 2000},
		{ID: "happy-hour", Name: "Happy hour", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), From: "17:00", To: "19:00", Multiplier: 1500},
		{ID: "de-mondays", Name: "DE Mondays", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Days: []string{"mon"}, Bonus: 25, MinAmount: 1000,
			Segment: loyalty.Segment{Countries: []string{"DE"}}},
		{ID: "gold-night", Name: "Gold late night", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), From: "22:00", To: "02:00", Bonus: 10,
			Segment: loyalty.Segment{Tiers: []string{"gold"}}},
	}
	p.PunchCards = []loyalty.PunchCard{{ID: "coffee-card", Name: "Coffee card", SKU: "espresso", Buy: 5, Reward: "coffee"}}
	return p
}

var berlin, _ = time.LoadLocation("Europe/Berlin")

func TestComputeEarn(t *testing.T) {
	p := richProgram()
	if err := p.Validate(); err != nil {
		t.Fatalf("program: %v", err)
	}
	wed := time.Date(2026, 11, 18, 10, 0, 0, 0, berlin) // a Wednesday morning: no campaign
	sat := time.Date(2026, 11, 21, 10, 0, 0, 0, berlin)
	mon := time.Date(2026, 11, 23, 10, 0, 0, 0, berlin)
	for _, tt := range []struct {
		name   string
		member loyalty.Member
		amount int64
		lines  []loyalty.Line
		at     time.Time
		want   int64
		camps  []string
	}{
		{"plain", loyalty.Member{}, 1299, nil, wed, 12, nil},
		{"category rate", loyalty.Member{}, 1000, []loyalty.Line{{Category: "coffee", Qty: 2, Amount: 500}, {Qty: 1, Amount: 500}}, wed, 15 + 5, nil},
		{"zero-rated category", loyalty.Member{}, 900, []loyalty.Line{{Category: "tobacco", Qty: 1, Amount: 900}}, wed, 0, nil},
		{"silver 1.5x", loyalty.Member{Tier: "silver"}, 1000, nil, wed, 15, nil},
		{"gold 2x", loyalty.Member{Tier: "gold"}, 1000, nil, wed, 20, nil},
		{"weekend double", loyalty.Member{}, 1000, nil, sat, 20, []string{"double-weekend"}},
		{"tier and campaign multiply", loyalty.Member{Tier: "silver"}, 1000, nil, sat, 30, []string{"double-weekend"}},
		{"happy hour first minute", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 18, 17, 0, 0, 0, berlin), 15, []string{"happy-hour"}},
		{"happy hour last minute", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 18, 18, 59, 59, 0, berlin), 15, []string{"happy-hour"}},
		{"happy hour over", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 18, 19, 0, 0, 0, berlin), 10, nil},
		{"best multiplier only", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 21, 17, 30, 0, 0, berlin), 20, []string{"double-weekend", "happy-hour"}},
		{"segment by country", loyalty.Member{Country: "DE"}, 1000, nil, mon, 35, []string{"de-mondays"}},
		{"segment misses", loyalty.Member{Country: "FR"}, 1000, nil, mon, 10, nil},
		{"below min amount", loyalty.Member{Country: "DE"}, 999, nil, mon, 9, nil},
		{"over midnight, late", loyalty.Member{Tier: "gold"}, 100, nil, time.Date(2026, 11, 18, 23, 0, 0, 0, berlin), 12, []string{"gold-night"}},
		{"over midnight, early", loyalty.Member{Tier: "gold"}, 100, nil, time.Date(2026, 11, 19, 1, 59, 0, 0, berlin), 12, []string{"gold-night"}},
		{"weekend's last local second", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 29, 22, 59, 59, 0, time.UTC), 20, []string{"double-weekend"}},
		{"Tuesday in Berlin, Monday in UTC", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC), 10, nil},
		{"campaign ended", loyalty.Member{}, 1000, nil, time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), 10, nil},
		{"local day, not UTC day", loyalty.Member{}, 1000, nil, time.Date(2026, 11, 20, 23, 30, 0, 0, time.UTC), 20, []string{"double-weekend"}}, // Saturday 00:30 in Berlin
	} {
		r, err := p.ComputeEarn(loyalty.EarnInput{Member: tt.member, Amount: tt.amount, Currency: "EUR", Lines: tt.lines, At: tt.at, Location: berlin})
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if r.Points != tt.want || !reflect.DeepEqual(r.Campaigns, tt.camps) {
			t.Errorf("%s: %d points %v (%s), want %d %v", tt.name, r.Points, r.Campaigns, r.Describe(), tt.want, tt.camps)
		}
		if r.Base+r.TierBonus+r.CampaignBonus != r.Points {
			t.Errorf("%s: breakdown %s does not add up", tt.name, r.Describe())
		}
	}
}

func TestComputeEarn_PunchCard(t *testing.T) {
	p := richProgram()
	at := time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		have, buy int64
		rewards   int
	}{{0, 4, 0}, {4, 1, 1}, {0, 5, 1}, {3, 7, 2}, {9, 1, 1}, {10, 4, 0}} {
		m := loyalty.Member{Punches: map[string]int64{"coffee-card": tt.have}}
		lines := []loyalty.Line{{SKU: "espresso", Qty: tt.buy, Amount: 250 * tt.buy}}
		r, err := p.ComputeEarn(loyalty.EarnInput{Member: m, Amount: 250 * tt.buy, Currency: "EUR", Lines: lines, At: at})
		if err != nil {
			t.Fatal(err)
		}
		if r.Punches["coffee-card"] != tt.buy || len(r.PunchRewards) != tt.rewards {
			t.Errorf("had %d, bought %d: punches %v rewards %v, want %d reward(s)", tt.have, tt.buy, r.Punches, r.PunchRewards, tt.rewards)
		}
	}
}

func TestComputeEarn_Rejects(t *testing.T) {
	p := richProgram()
	at := time.Now()
	for name, in := range map[string]loyalty.EarnInput{
		"lines do not add up": {Amount: 1000, Currency: "EUR", Lines: []loyalty.Line{{Qty: 1, Amount: 999}}, At: at},
		"negative line":       {Amount: 0, Currency: "EUR", Lines: []loyalty.Line{{Qty: 1, Amount: -1}, {Qty: 1, Amount: 1}}, At: at},
		"currency":            {Amount: 100, Currency: "USD", At: at},
	} {
		if _, err := p.ComputeEarn(in); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
}

func TestTierRules(t *testing.T) {
	r := richProgram().Tiers
	for _, tt := range []struct {
		total int64
		want  string
	}{{0, "member"}, {49999, "member"}, {50000, "silver"}, {199999, "silver"}, {200000, "gold"}} {
		if got := r.TierFor(tt.total).ID; got != tt.want {
			t.Errorf("TierFor(%d) = %s, want %s", tt.total, got, tt.want)
		}
	}
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct{ window, want string }{
		{loyalty.WindowRolling12M, "2025-11-22"}, {loyalty.WindowCalendar, "2026-01-01"}, {loyalty.WindowLifetime, "0001-01-01"},
	} {
		r.Window = tt.window
		if got := r.WindowStart(at).Format(time.DateOnly); got != tt.want {
			t.Errorf("%s window starts %s, want %s", tt.window, got, tt.want)
		}
	}
}

func TestProgram_ValidateRules(t *testing.T) {
	for name, mutate := range map[string]func(*loyalty.Program){
		"entry tier threshold": func(p *loyalty.Program) { p.Tiers.Tiers[0].Threshold = 1 },
		"falling thresholds":   func(p *loyalty.Program) { p.Tiers.Tiers[2].Threshold = 100 },
		"tier multiplier":      func(p *loyalty.Program) { p.Tiers.Tiers[1].Multiplier = 500 },
		"tier basis":           func(p *loyalty.Program) { p.Tiers.Basis = "vibes" },
		"campaign ends first":  func(p *loyalty.Program) { p.Campaigns[0].End = p.Campaigns[0].Start },
		"campaign gives none":  func(p *loyalty.Program) { p.Campaigns[0].Multiplier = 0 },
		"campaign day":         func(p *loyalty.Program) { p.Campaigns[0].Days = []string{"caturday"} },
		"campaign hours":       func(p *loyalty.Program) { p.Campaigns[1].To = "25:00" },
		"half hours":           func(p *loyalty.Program) { p.Campaigns[1].To = "" },
		"segment tier":         func(p *loyalty.Program) { p.Campaigns[3].Segment.Tiers = []string{"platinum"} },
		"duplicate campaign":   func(p *loyalty.Program) { p.Campaigns[1].ID = p.Campaigns[0].ID },
		"punch card reward":    func(p *loyalty.Program) { p.PunchCards[0].Reward = "yacht" },
		"punch card target":    func(p *loyalty.Program) { p.PunchCards[0].Category = "coffee" },
		"punch card buy":       func(p *loyalty.Program) { p.PunchCards[0].Buy = 0 },
		"action points":        func(p *loyalty.Program) { p.Actions = []loyalty.ActionRule{{ID: "review"}} },
		"action named purchase": func(p *loyalty.Program) {
			p.Actions = []loyalty.ActionRule{{ID: loyalty.RulePurchase, Points: 5}}
		},
		"action cap without period": func(p *loyalty.Program) { p.Actions = []loyalty.ActionRule{{ID: "review", Points: 5, MaxTimes: 1}} },
	} {
		p := richProgram()
		mutate(&p)
		if code := loyalty.ErrorCode(p.Validate()); code != loyalty.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, p.Validate())
		}
	}
	p := richProgram()
	p.Actions = []loyalty.ActionRule{{ID: "social_follow", Points: 20}}
	p.EarnCaps = []loyalty.EarnCap{{Rule: "social_follow", Period: loyalty.PeriodMonth, MaxPoints: 100}}
	if err := p.Validate(); err != nil {
		t.Errorf("a cap on an action rule: %v", err)
	}
	_ = fmt.Sprint()
}

func TestRewards(t *testing.T) {
	pct := loyalty.Reward{ID: "p", Name: "20% off", Kind: "percent_off", Value: 20, MaxValue: 1000}
	for _, tt := range []struct{ order, want int64 }{{0, 0}, {2500, 500}, {5000, 1000}, {9000, 1000}} {
		if got := pct.Discount(tt.order); got != tt.want {
			t.Errorf("20%% off capped at 10.00 on %d: %d, want %d", tt.order, got, tt.want)
		}
	}
	off := loyalty.Reward{ID: "o", Name: "5 off", Kind: "amount_off", Value: 500, MinOrder: 2000, Tiers: []string{"gold"}}
	if off.Discount(300) != 300 {
		t.Error("amount_off takes at most the order")
	}
	for _, tt := range []struct {
		tier  string
		order int64
		ok    bool
	}{{"gold", 2000, true}, {"gold", 1999, false}, {"silver", 5000, false}} {
		if err := off.Redeemable(tt.tier, tt.order); (err == nil) != tt.ok {
			t.Errorf("%s on %d: %v, want ok=%v", tt.tier, tt.order, err, tt.ok)
		}
	}
	p := richProgram()
	p.CategoryRates = append(p.CategoryRates, loyalty.CategoryRate{SKU: "espresso", PointsPerUnit: 5})
	r, err := p.ComputeEarn(loyalty.EarnInput{Amount: 200, Currency: "EUR", At: time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC),
		Lines: []loyalty.Line{{SKU: "espresso", Category: "coffee", Qty: 1, Amount: 100}, {Category: "coffee", Qty: 1, Amount: 100}}})
	if err != nil || r.Base != 5+3 {
		t.Errorf("a product's rate wins over its category's: %+v, %v", r, err)
	}
	p.Rewards = append(p.Rewards, loyalty.Reward{ID: "vip", Name: "VIP gift", PointsCost: 10, Kind: "free_product", Tiers: []string{"platinum"}})
	if loyalty.ErrorCode(p.Validate()) != loyalty.EINVALID {
		t.Error("a tier-only reward naming an unknown tier was accepted")
	}
}

// TestComputeEarn_RoundsOnce: base 49 at 1.5x and 2x is 147 exactly, not 73 then 146.
func TestComputeEarn_RoundsOnce(t *testing.T) {
	p := richProgram()
	p.Campaigns = []loyalty.Campaign{{ID: "x", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		Multiplier: 2000}, {ID: "y", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Bonus: 25}}
	r, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: "silver"}, Amount: 4999, Currency: "EUR", At: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil || r.Points != 172 || r.Base+r.TierBonus+r.CampaignBonus != 172 {
		t.Errorf("49 x 1.5 x 2 + 25: %+v, %v; want 172", r, err)
	}
	huge, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: "gold"}, Amount: loyalty.MaxAmount, Currency: "EUR", At: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil || huge.Points != loyalty.MaxAmount/100*4+25 {
		t.Errorf("the largest order at 2x and 2x: %d, %v", huge.Points, err)
	}
	p.Campaigns[0].From, p.Campaigns[0].To = "9:00", "17:00"
	if loyalty.ErrorCode(p.Validate()) != loyalty.EINVALID {
		t.Error("an hour written 9:00 (not 09:00) was accepted")
	}
}
