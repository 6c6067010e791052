package loyalty_test

import (
	"fmt"
	"math"
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

// A segment's country in lower case selects the members of that country, whose country is stored
// in upper case: "de" selected no one, while the hub reads a member's "de" as DE.
func TestComputeEarn_SegmentCountryInAnyCase(t *testing.T) {
	p := richProgram()
	p.Campaigns[2].Segment.Countries = []string{"de"}
	mon := time.Date(2026, 11, 23, 10, 0, 0, 0, berlin)
	for _, tt := range []struct {
		country string
		want    int64
	}{{"DE", 35}, {"FR", 10}, {"", 10}} {
		r, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Country: tt.country}, Amount: 1000, Currency: "EUR", At: mon, Location: berlin})
		if err != nil || r.Points != tt.want {
			t.Errorf("a member of %q: %d points (%v), want %d", tt.country, r.Points, err, tt.want)
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
		"expiry mode":               func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: "lots", AfterDays: 30} },
		"expiry after no days":      func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot} },
		"expiry after too many days": func(p *loyalty.Program) {
			p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: loyalty.MaxExpiryDays + 1}
		},
		"lot reminder as long as the lot": func(p *loyalty.Program) {
			p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30, RemindDays: 30}
		},
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
	p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 365, RemindDays: 30}
	if err := p.Validate(); err != nil {
		t.Errorf("expiry per lot: %v", err)
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

// multiCurrency earns 10 points per EUR, 12 per GBP and 1 per 10 JPY, with coffee at 30 points
// per EUR, decaf at nothing, points tiers and a campaign with a minimum of 50.00 EUR.
func multiCurrency() loyalty.Program {
	p := loyalty.DefaultProgram()
	p.Earn = loyalty.EarnRule{PointsPerUnit: 10, UnitMinor: 100, Currencies: []loyalty.CurrencyRate{
		{Currency: "GBP", PointsPerUnit: 12, UnitMinor: 100},
		{Currency: "JPY", PointsPerUnit: 1, UnitMinor: 10},
	}}
	p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: 30}, {SKU: "decaf", PointsPerUnit: 0}}
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisPoints, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
		{ID: "member", Threshold: 0, Multiplier: 1000}, {ID: "gold", Threshold: 1000, Multiplier: 1500}}}
	p.Campaigns = []loyalty.Campaign{{ID: "big-basket", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		End: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), Bonus: 100, MinAmount: 5000}}
	return p
}

// TestComputeEarn_Currencies: a sale in a listed currency earns at its rate; category rates are
// scaled by the ratio of its rate to the main one; tiers apply as usual; the campaign minimum is
// compared at that ratio; an unlisted currency is refused naming the ones that earn.
func TestComputeEarn_Currencies(t *testing.T) {
	p := multiCurrency()
	if err := p.Validate(); err != nil {
		t.Fatalf("program: %v", err)
	}
	jan := time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC) // no campaign
	jun := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)  // big-basket runs
	coffee := func(amount int64) []loyalty.Line { return []loyalty.Line{{Category: "coffee", Qty: 1, Amount: amount}} }
	for _, tt := range []struct {
		name     string
		currency string
		amount   int64
		lines    []loyalty.Line
		tier     string
		at       time.Time
		want     int64
	}{
		{"EUR at the main rate", "EUR", 1299, nil, "", jan, 129},
		{"GBP at its own rate", "GBP", 1299, nil, "", jan, 155},                           // 12.99 × 12 = 155.88
		{"JPY at its own rate", "JPY", 1299, nil, "", jan, 129},                           // 1299 ÷ 10
		{"EUR coffee", "EUR", 1000, coffee(1000), "", jan, 300},                           // 10.00 × 30
		{"GBP coffee: 30 × 12/10 per pound", "GBP", 1000, coffee(1000), "", jan, 360},     // 10.00 × 30 × 12 ÷ 10
		{"GBP coffee, rounded down once per line", "GBP", 999, coffee(999), "", jan, 359}, // 999 × 30 × 12 ÷ 1000 = 359.64
		{"JPY coffee: 30 × (1/10) / 10 per yen", "JPY", 1000, coffee(1000), "", jan, 300}, // 1000 × 30 × 1 ÷ (10 × 10)
		{"GBP decaf earns nothing", "GBP", 500, []loyalty.Line{{SKU: "decaf", Qty: 1, Amount: 500}}, "", jan, 0},
		{"GBP gold 1.5x", "GBP", 1000, nil, "gold", jan, 180},
		{"GBP under the campaign minimum", "GBP", 4166, nil, "", jun, 499},      // worth 49.99 EUR
		{"GBP at the campaign minimum", "GBP", 4167, nil, "", jun, 500 + 100},   // worth 50.00 EUR
		{"JPY at the campaign minimum", "JPY", 50000, nil, "", jun, 5000 + 100}, // 50000 JPY earn like 500.00 EUR
		{"JPY under the campaign minimum", "JPY", 4999, nil, "", jun, 499},      // worth 49.99 EUR
	} {
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: tt.tier}, Amount: tt.amount, Currency: tt.currency, Lines: tt.lines, At: tt.at})
		if err != nil || res.Points != tt.want {
			t.Errorf("%s: %d points (%s), %v; want %d", tt.name, res.Points, res.Describe(), err, tt.want)
		}
	}
	_, err := p.ComputeEarn(loyalty.EarnInput{Amount: 1000, Currency: "USD", At: jan})
	if loyalty.ErrorCode(err) != loyalty.EINVALID || loyalty.ErrorMessage(err) != "this program does not earn points in USD; it earns in EUR, GBP, JPY" {
		t.Errorf("USD: %v", err)
	}
	if v, err := p.ProgramAmount(4167, "GBP"); err != nil || v != 5000 {
		t.Errorf("41.67 GBP in EUR: %d, %v; want 5000", v, err)
	}
	if got, err := p.EarnPoints(1299, "GBP"); err != nil || got != 155 {
		t.Errorf("EarnPoints(12.99 GBP) = %d, %v; want 155", got, err)
	}
	// One program currency only: the message names it.
	d := loyalty.DefaultProgram()
	if _, err := d.ComputeEarn(loyalty.EarnInput{Amount: 1000, Currency: "USD", At: jan}); loyalty.ErrorMessage(err) != "this program does not earn points in USD; it earns in EUR" {
		t.Errorf("USD under the default program: %v", err)
	}
}

// TestComputeEarn_CurrencyExtremes: the highest rates, units and amounts in another currency are
// refused past MaxPoints, never wrapped around; the largest that fits is exact.
func TestComputeEarn_CurrencyExtremes(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.Earn = loyalty.EarnRule{PointsPerUnit: 1, UnitMinor: 10_000, Currencies: []loyalty.CurrencyRate{{Currency: "XAU", PointsPerUnit: 1000, UnitMinor: 1}}}
	p.CategoryRates = []loyalty.CategoryRate{{Category: "big", PointsPerUnit: 1000}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// 1000 × 1000 ÷ 1 = 10^6 points per minor unit: 10^6 minor units is the most that fits.
	res, err := p.ComputeEarn(loyalty.EarnInput{Amount: 1_000_000, Currency: "XAU", Lines: []loyalty.Line{{Category: "big", Qty: 1, Amount: 1_000_000}}})
	if err != nil || res.Points != loyalty.MaxPoints {
		t.Errorf("the most that fits: %d, %v", res.Points, err)
	}
	for _, amount := range []int64{1_000_001, loyalty.MaxAmount} {
		_, err := p.ComputeEarn(loyalty.EarnInput{Amount: amount, Currency: "XAU", Lines: []loyalty.Line{{Category: "big", Qty: 1, Amount: amount}}})
		if loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("%d minor units at 10^6 points each: %v, want EINVALID", amount, err)
		}
	}
	// ProgramAmount past int64 passes any minimum instead of wrapping around.
	if v, err := p.ProgramAmount(loyalty.MaxAmount, "XAU"); err != nil || v != math.MaxInt64 {
		t.Errorf("ProgramAmount at the extremes: %d, %v", v, err)
	}
}

func TestProgram_ValidateCurrencies(t *testing.T) {
	for name, tt := range map[string]struct {
		mutate func(*loyalty.Program)
		msg    string
	}{
		"lower case":    {func(p *loyalty.Program) { p.Earn.Currencies[0].Currency = "gbp" }, `earn.currencies[0]: currency must be a 3-letter ISO 4217 code such as EUR, got "gbp"`},
		"own currency":  {func(p *loyalty.Program) { p.Earn.Currencies[0].Currency = "EUR" }, "earn.currencies[0]: EUR is the program's own currency; its rate is earn.points_per_unit and earn.unit_minor"},
		"twice":         {func(p *loyalty.Program) { p.Earn.Currencies[1].Currency = "GBP" }, "earn.currencies[1]: GBP is listed twice"},
		"unit 0":        {func(p *loyalty.Program) { p.Earn.Currencies[0].UnitMinor = 0 }, "earn.currencies[0]: unit_minor of GBP must be 1 to 10000 (100 for cents)"},
		"unit too big":  {func(p *loyalty.Program) { p.Earn.Currencies[0].UnitMinor = 10_001 }, "earn.currencies[0]: unit_minor of GBP must be 1 to 10000 (100 for cents)"},
		"rate negative": {func(p *loyalty.Program) { p.Earn.Currencies[1].PointsPerUnit = -1 }, "earn.currencies[1]: points_per_unit of JPY must be 0 to 1000"},
		"rate too high": {func(p *loyalty.Program) { p.Earn.Currencies[1].PointsPerUnit = 1001 }, "earn.currencies[1]: points_per_unit of JPY must be 0 to 1000"},
		"no main rate":  {func(p *loyalty.Program) { p.Earn.PointsPerUnit = 0 }, "earn.currencies needs earn.points_per_unit of at least 1: the other currencies' category rates and campaign minimums are read at the ratio of their rate to it"},
		"spend tiers":   {func(p *loyalty.Program) { p.Tiers.Basis = loyalty.BasisSpend }, "earn.currencies cannot be combined with tiers.basis spend: amounts in different currencies do not add up; use tiers.basis points"},
		"too many": {func(p *loyalty.Program) {
			for i := range loyalty.MaxCurrencies {
				p.Earn.Currencies = append(p.Earn.Currencies, loyalty.CurrencyRate{Currency: fmt.Sprintf("X%c%c", 'A'+i/26, 'A'+i%26), PointsPerUnit: 1, UnitMinor: 100})
			}
		}, fmt.Sprintf("earn.currencies has %d entries; at most %d", loyalty.MaxCurrencies+2, loyalty.MaxCurrencies)},
	} {
		p := multiCurrency()
		tt.mutate(&p)
		if err := p.Validate(); loyalty.ErrorCode(err) != loyalty.EINVALID || loyalty.ErrorMessage(err) != tt.msg {
			t.Errorf("%s: %v, want EINVALID %q", name, err, tt.msg)
		}
	}
	// A listed currency may earn nothing (it is accepted, and punches punch cards).
	p := multiCurrency()
	p.Earn.Currencies[0].PointsPerUnit = 0
	if err := p.Validate(); err != nil {
		t.Errorf("a currency at 0 points: %v", err)
	}
}

func TestValidateBirthday(t *testing.T) {
	today := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, ok := range []string{"07-14", "02-29", "12-31", "01-01", "1990-07-14", "2000-02-29", "1900-01-01", "2026-11-22"} {
		if err := loyalty.ValidateBirthday(ok, today); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, msg := range map[string]string{
		"02-30":      `birthday "02-30" is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)`,
		"13-01":      `birthday "13-01" is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)`,
		"7-14":       `birthday "7-14" is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)`,
		"14.07.1990": `birthday "14.07.1990" is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)`,
		"1999-02-29": `birthday "1999-02-29" is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)`,
		"00-00":      `birthday "00-00" is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)`,
		"1899-12-31": `birthday "1899-12-31": the year must be 1900 or later (or leave it out: MM-DD)`,
		"2026-11-23": `birthday "2026-11-23" is in the future`,
	} {
		if err := loyalty.ValidateBirthday(bad, today); loyalty.ErrorCode(err) != loyalty.EINVALID || loyalty.ErrorMessage(err) != msg {
			t.Errorf("%q: %v, want EINVALID %q", bad, err, msg)
		}
	}
}

// TestBirthdayDue: from local midnight of the birthday for BirthdayGraceDays days, in the member's
// zone; 29 February on 28 February in other years; not for a member who joined after it; the year
// is the birthday's, also when a late-December birthday is caught up in January.
func TestBirthdayDue(t *testing.T) {
	utc := time.UTC
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	joined := time.Date(2020, 1, 1, 0, 0, 0, 0, utc)
	for _, tt := range []struct {
		name     string
		birthday string
		loc      *time.Location
		created  time.Time
		now      time.Time
		year     int
		due      bool
	}{
		{"the day before", "07-14", utc, joined, time.Date(2026, 7, 13, 23, 59, 59, 0, utc), 0, false},
		{"midnight", "07-14", utc, joined, time.Date(2026, 7, 14, 0, 0, 0, 0, utc), 2026, true},
		{"a week of catching up", "07-14", utc, joined, time.Date(2026, 7, 20, 23, 59, 59, 0, utc), 2026, true},
		{"too late", "07-14", utc, joined, time.Date(2026, 7, 21, 0, 0, 0, 0, utc), 0, false},
		{"with a birth year", "1990-07-14", utc, joined, time.Date(2026, 7, 14, 12, 0, 0, 0, utc), 2026, true},
		{"in Tokyo, already the 14th", "07-14", tokyo, joined, time.Date(2026, 7, 13, 15, 0, 0, 0, utc), 2026, true},
		{"in Tokyo, still the 13th", "07-14", tokyo, joined, time.Date(2026, 7, 13, 14, 59, 59, 0, utc), 0, false},
		{"29 February in a leap year", "02-29", utc, joined, time.Date(2028, 2, 29, 8, 0, 0, 0, utc), 2028, true},
		{"not 28 February in a leap year", "02-29", utc, joined, time.Date(2028, 2, 28, 8, 0, 0, 0, utc), 0, false},
		{"28 February in another year", "02-29", utc, joined, time.Date(2027, 2, 28, 0, 0, 0, 0, utc), 2027, true},
		{"born 2000-02-29, in 2027", "2000-02-29", utc, joined, time.Date(2027, 2, 28, 0, 0, 0, 0, utc), 2027, true},
		{"31 December, caught up on 2 January", "12-31", utc, joined, time.Date(2027, 1, 2, 0, 0, 0, 0, utc), 2026, true},
		{"joined on the day", "07-14", utc, time.Date(2026, 7, 14, 18, 0, 0, 0, utc), time.Date(2026, 7, 14, 19, 0, 0, 0, utc), 2026, true},
		{"joined after the day", "07-14", utc, time.Date(2026, 7, 15, 0, 0, 0, 0, utc), time.Date(2026, 7, 16, 0, 0, 0, 0, utc), 0, false},
		{"the day of birth itself", "2026-07-14", utc, joined, time.Date(2026, 7, 14, 12, 0, 0, 0, utc), 0, false},
		{"no birthday", "", utc, joined, time.Date(2026, 7, 14, 12, 0, 0, 0, utc), 0, false},
	} {
		year, due := loyalty.BirthdayDue(tt.birthday, tt.loc, tt.created, tt.now)
		if year != tt.year || due != tt.due {
			t.Errorf("%s: %d, %v; want %d, %v", tt.name, year, due, tt.year, tt.due)
		}
	}
}
