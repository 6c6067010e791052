package loyalty_test

import (
	"crypto/rand"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

func TestMoney_UnmarshalJSON(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		code string
	}{
		{`1250`, 1250, ""},
		{`0`, 0, ""},
		{`1000000000000`, 1_000_000_000_000, ""},
		{`1000000000001`, 0, loyalty.EINVALID},
		{`12.5`, 0, loyalty.EINVALID},
		{`12.0`, 0, loyalty.EINVALID},
		{`1e3`, 0, loyalty.EINVALID},
		{`-1`, 0, loyalty.EINVALID},
		{`"1250"`, 0, loyalty.EINVALID},
		{`null`, 0, loyalty.EINVALID},
		{`99999999999999999999`, 0, loyalty.EINVALID},
	} {
		var v struct{ Amount loyalty.Money }
		err := json.Unmarshal([]byte(`{"Amount":`+tt.in+`}`), &v)
		if got := loyalty.ErrorCode(err); got != tt.code {
			t.Errorf("%s: code %q, want %q (err %v)", tt.in, got, tt.code, err)
		}
		if err == nil && int64(v.Amount) != tt.want {
			t.Errorf("%s: got %d, want %d", tt.in, v.Amount, tt.want)
		}
	}
}

func TestProgram_EarnPoints(t *testing.T) {
	p := loyalty.DefaultProgram() // 1 point per 1.00 EUR
	for _, tt := range []struct {
		amount   int64
		currency string
		want     int64
		code     string
	}{
		{0, "EUR", 0, ""},
		{99, "EUR", 0, ""},    // below one unit: rounded down to nothing
		{100, "EUR", 1, ""},   // exactly one unit
		{1299, "EUR", 12, ""}, // 12.99 earns 12
		{1300, "EUR", 13, ""},
		{loyalty.MaxAmount, "EUR", loyalty.MaxAmount / 100, ""},
		{-1, "EUR", 0, loyalty.EINVALID},
		{loyalty.MaxAmount + 1, "EUR", 0, loyalty.EINVALID},
		{100, "USD", 0, loyalty.EINVALID},
	} {
		got, err := p.EarnPoints(tt.amount, tt.currency)
		if code := loyalty.ErrorCode(err); code != tt.code {
			t.Errorf("EarnPoints(%d, %s): code %q, want %q", tt.amount, tt.currency, code, tt.code)
		} else if got != tt.want {
			t.Errorf("EarnPoints(%d, %s) = %d, want %d", tt.amount, tt.currency, got, tt.want)
		}
	}
	yen := loyalty.Program{Currency: "JPY", Earn: loyalty.EarnRule{PointsPerUnit: 3, UnitMinor: 1}}
	if got, _ := yen.EarnPoints(250, "JPY"); got != 750 {
		t.Errorf("3 points per yen on 250 JPY = %d, want 750", got)
	}
}

func TestProgram_Validate(t *testing.T) {
	ok := loyalty.DefaultProgram()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default program: %v", err)
	}
	for name, mutate := range map[string]func(*loyalty.Program){
		"currency":        func(p *loyalty.Program) { p.Currency = "euro" },
		"unit zero":       func(p *loyalty.Program) { p.Earn.UnitMinor = 0 },
		"negative rate":   func(p *loyalty.Program) { p.Earn.PointsPerUnit = -1 },
		"duplicate id":    func(p *loyalty.Program) { p.Rewards = append(p.Rewards, p.Rewards[0]) },
		"free reward":     func(p *loyalty.Program) { p.Rewards[0].PointsCost = 0 },
		"nameless reward": func(p *loyalty.Program) { p.Rewards[0].Name = "" },
		"unknown zone":    func(p *loyalty.Program) { p.OnlineTimeZone = "Europe/Atlantis" },
		"machine's zone":  func(p *loyalty.Program) { p.OnlineTimeZone = "Local" },
		"path as zone":    func(p *loyalty.Program) { p.OnlineTimeZone = "../../etc/passwd" },
	} {
		p := loyalty.DefaultProgram()
		mutate(&p)
		if code := loyalty.ErrorCode(p.Validate()); code != loyalty.EINVALID {
			t.Errorf("%s: code %q, want EINVALID", name, code)
		}
	}
}

// TestProgram_OnlineLocation: the online channel's zone is the program's online_timezone, UTC
// without one.
func TestProgram_OnlineLocation(t *testing.T) {
	p := loyalty.DefaultProgram()
	if loc, name := p.OnlineLocation(); loc != time.UTC || name != "UTC" {
		t.Errorf("without online_timezone: %v %q, want UTC", loc, name)
	}
	p.OnlineTimeZone = "Europe/Paris"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 15, 16, 30, 0, 0, time.UTC)
	if loc, name := p.OnlineLocation(); name != "Europe/Paris" || at.In(loc).Hour() != 17 {
		t.Errorf("online_timezone Europe/Paris: %q, 16:30 UTC is %v there; want 17:30", name, at.In(loc))
	}
}

func validDelta() loyalty.Delta {
	return loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindEarn, Points: 12,
		Amount: 1299, Currency: "EUR", OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)}
}

func TestDelta_Validate(t *testing.T) {
	if d := validDelta(); d.Validate() != nil {
		t.Fatalf("valid delta refused: %v", d.Validate())
	}
	for name, mutate := range map[string]func(*loyalty.Delta){
		"no id":              func(d *loyalty.Delta) { d.ID = "" },
		"no store":           func(d *loyalty.Delta) { d.Store = "" },
		"no member":          func(d *loyalty.Delta) { d.Member = "" },
		"no time":            func(d *loyalty.Delta) { d.OccurredAt = time.Time{} },
		"negative earn":      func(d *loyalty.Delta) { d.Points = -1 },
		"negative amount":    func(d *loyalty.Delta) { d.Amount = -1 },
		"bad currency":       func(d *loyalty.Delta) { d.Currency = "eur" },
		"unknown kind":       func(d *loyalty.Delta) { d.Kind = "gift" },
		"positive redeem":    func(d *loyalty.Delta) { d.Kind, d.Reward = loyalty.KindRedeem, "coffee" },
		"redeem of nothing":  func(d *loyalty.Delta) { d.Kind, d.Points = loyalty.KindRedeem, -50 },
		"reverse of nothing": func(d *loyalty.Delta) { d.Kind = loyalty.KindReverse },
		"earn as a refund":   func(d *loyalty.Delta) { d.Reverses = "d1" },
		"redeem as a refund": func(d *loyalty.Delta) {
			d.Kind, d.Points, d.Reward, d.Reverses = loyalty.KindRedeem, -50, "coffee", "d1"
		},
		"tier as a refund": func(d *loyalty.Delta) { d.Kind, d.Points, d.Reverses = loyalty.KindTier, 0, "d1" },
		"huge points":      func(d *loyalty.Delta) { d.Points = loyalty.MaxPoints + 1 },
		"long id":          func(d *loyalty.Delta) { d.OrderID = string(make([]byte, loyalty.MaxIDLength+1)) },
	} {
		d := validDelta()
		mutate(&d)
		if code := loyalty.ErrorCode(d.Validate()); code != loyalty.EINVALID {
			t.Errorf("%s: code %q, want EINVALID", name, code)
		}
	}
}

func TestDelta_Hash(t *testing.T) {
	a := validDelta()
	b := a
	b.OccurredAt = a.OccurredAt.In(time.FixedZone("CET", 3600)).Add(400 * time.Microsecond) // same instant at ms precision
	if a.Hash() != b.Hash() {
		t.Error("the same delta hashes differently after a time zone change or sub-millisecond noise")
	}
	c := a
	c.Points++
	if a.Hash() == c.Hash() {
		t.Error("different points, same hash")
	}
	if loyalty.NewDeltaID() == loyalty.NewDeltaID() {
		t.Error("two delta ids are equal")
	}
}

func TestErrorCode(t *testing.T) {
	if got := loyalty.ErrorCode(nil); got != "" {
		t.Errorf("nil: %q", got)
	}
	if got := loyalty.ErrorCode(json.Unmarshal([]byte("{"), &struct{}{})); got != loyalty.EINTERNAL {
		t.Errorf("plain error: %q, want EINTERNAL", got)
	}
	if got := loyalty.ErrorMessage(json.Unmarshal([]byte("{"), &struct{}{})); got == "" || got == "unexpected end of JSON input" {
		t.Errorf("plain error message leaks or is empty: %q", got)
	}
}

func TestPeriodStart(t *testing.T) {
	at := time.Date(2026, 11, 22, 15, 4, 5, 0, time.UTC) // a Sunday
	for _, tt := range []struct {
		period string
		at     time.Time
		want   time.Time
	}{
		{loyalty.PeriodDay, at, time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)},
		{loyalty.PeriodWeek, at, time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)},                                            // Monday
		{loyalty.PeriodWeek, time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)}, // Monday itself
		{loyalty.PeriodMonth, at, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		{loyalty.PeriodMonth, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{loyalty.PeriodTotal, at, time.Time{}},
		{loyalty.PeriodDay, time.Date(2026, 11, 22, 23, 30, 0, 0, time.FixedZone("X", -3600)), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}, // UTC
	} {
		if got := loyalty.PeriodStart(tt.period, tt.at); !got.Equal(tt.want) {
			t.Errorf("PeriodStart(%s, %s) = %s, want %s", tt.period, tt.at, got, tt.want)
		}
	}
}

// TestPeriodBounds: every period has both ends, [start, end), in UTC; total has neither.
func TestPeriodBounds(t *testing.T) {
	d := func(y int, m time.Month, day int) time.Time { return time.Date(y, m, day, 0, 0, 0, 0, time.UTC) }
	at := time.Date(2026, 11, 22, 15, 4, 5, 0, time.UTC) // a Sunday
	for _, tt := range []struct {
		period     string
		at         time.Time
		start, end time.Time
	}{
		{loyalty.PeriodDay, at, d(2026, 11, 22), d(2026, 11, 23)},
		{loyalty.PeriodDay, d(2026, 11, 23).Add(-time.Millisecond), d(2026, 11, 22), d(2026, 11, 23)}, // its last instant
		{loyalty.PeriodDay, d(2026, 12, 31), d(2026, 12, 31), d(2027, 1, 1)},
		{loyalty.PeriodWeek, at, d(2026, 11, 16), d(2026, 11, 23)}, // Monday to Monday
		{loyalty.PeriodWeek, d(2026, 11, 23), d(2026, 11, 23), d(2026, 11, 30)},
		{loyalty.PeriodMonth, at, d(2026, 11, 1), d(2026, 12, 1)},
		{loyalty.PeriodMonth, d(2026, 12, 15), d(2026, 12, 1), d(2027, 1, 1)},
		{loyalty.PeriodMonth, d(2028, 2, 29), d(2028, 2, 1), d(2028, 3, 1)},
		{loyalty.PeriodTotal, at, time.Time{}, time.Time{}},
		{loyalty.PeriodDay, time.Date(2026, 11, 22, 23, 30, 0, 0, time.FixedZone("X", -3600)), d(2026, 11, 23), d(2026, 11, 24)}, // UTC
	} {
		start, end := loyalty.PeriodBounds(tt.period, tt.at)
		if !start.Equal(tt.start) || !end.Equal(tt.end) {
			t.Errorf("PeriodBounds(%s, %s) = [%s, %s), want [%s, %s)", tt.period, tt.at, start, end, tt.start, tt.end)
		}
		if !tt.end.IsZero() && (tt.at.Before(start) || !tt.at.Before(end)) {
			t.Errorf("PeriodBounds(%s, %s) does not contain its time", tt.period, tt.at)
		}
	}
	r := loyalty.TierRules{Window: loyalty.WindowCalendar}
	if s, e := r.WindowBounds(at); !s.Equal(d(2026, 1, 1)) || !e.Equal(d(2027, 1, 1)) {
		t.Errorf("calendar year window [%s, %s)", s, e)
	}
	r.Window = loyalty.WindowRolling12M
	if s, e := r.WindowBounds(at); !s.Equal(at.AddDate(-1, 0, 0)) || !e.Equal(at.Add(time.Millisecond)) {
		t.Errorf("rolling window [%s, %s), want the 12 months up to and including %s", s, e, at)
	}
	r.Window = loyalty.WindowLifetime
	if s, e := r.WindowBounds(at); !s.IsZero() || !e.IsZero() {
		t.Errorf("lifetime window [%s, %s), want no bounds", s, e)
	}
}

func TestProgram_ValidateLimits(t *testing.T) {
	for name, mutate := range map[string]func(*loyalty.Program){
		"unknown metric": func(p *loyalty.Program) { p.Budgets = []loyalty.Budget{{ID: "b", Metric: "hugs", Limit: 1}} },
		"budget reward": func(p *loyalty.Program) {
			p.Budgets = []loyalty.Budget{{ID: "b", Metric: "redemptions", Reward: "yacht"}}
		},
		"negative limit": func(p *loyalty.Program) { p.Budgets = []loyalty.Budget{{ID: "b", Metric: "redemptions", Limit: -1}} },
		"points with a reward": func(p *loyalty.Program) {
			p.Budgets = []loyalty.Budget{{ID: "b", Metric: "points_issued", Reward: "coffee"}}
		},
		"duplicate budget": func(p *loyalty.Program) {
			p.Budgets = []loyalty.Budget{{ID: "b", Metric: "redemptions"}, {ID: "b", Metric: "discount"}}
		},
		"member limit period": func(p *loyalty.Program) { p.MemberLimits = []loyalty.MemberLimit{{Period: "fortnight", Max: 1}} },
		"offline limit of 0":  func(p *loyalty.Program) { p.Rewards[0].Offline = loyalty.OfflineLimit },
		"offline policy":      func(p *loyalty.Program) { p.Rewards[0].Offline = "sometimes" },
		"earn cap rule": func(p *loyalty.Program) {
			p.EarnCaps = []loyalty.EarnCap{{Rule: "social", Period: "day", MaxPoints: 1}}
		},
		"reward kind":      func(p *loyalty.Program) { p.Rewards[0].Kind = "hug" },
		"percent over 100": func(p *loyalty.Program) { p.Rewards[0].Kind, p.Rewards[0].Value = "percent_off", 101 },
	} {
		p := loyalty.DefaultProgram()
		mutate(&p)
		if code := loyalty.ErrorCode(p.Validate()); code != loyalty.EINVALID {
			t.Errorf("%s: code %q, want EINVALID", name, code)
		}
	}
}

// TestProgram_OfflineValidity: offline_validity, of the program and of a reward, is text with a
// unit from 1m to 720h; left out, it is not written back (the default, 24h, applies).
func TestProgram_OfflineValidity(t *testing.T) {
	parse := func(program, reward string) (loyalty.Program, error) {
		var p loyalty.Program
		err := json.Unmarshal([]byte(`{"currency": "EUR", "earn": {"points_per_unit": 1, "unit_minor": 100}`+program+`,
			"rewards": [{"id": "coffee", "name": "Free coffee", "points_cost": 50, "kind": "free_product"`+reward+`}]}`), &p)
		if err == nil {
			err = p.Validate()
		}
		return p, err
	}
	p, err := parse(`, "offline_validity": "48h"`, `, "offline_validity": "90m"`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), `"offline_validity":"48h"`) || !strings.Contains(string(b), `"offline_validity":"1h30m"`) {
		t.Errorf("offline_validity not kept: %s", b)
	}
	if p, err := parse("", ""); err != nil {
		t.Fatal(err)
	} else if b, _ := json.Marshal(p); strings.Contains(string(b), "offline_validity") {
		t.Errorf("a program without offline_validity is written with one: %s", b)
	}
	for _, v := range []string{`10`, `"10"`, `"soon"`, `"30s"`, `"721h"`, `"-1h"`, `"0s"`} {
		for _, at := range []string{"program", "reward"} {
			field := `, "offline_validity": ` + v
			var err error
			if at == "program" {
				_, err = parse(field, "")
			} else {
				_, err = parse("", field)
			}
			if loyalty.ErrorCode(err) != loyalty.EINVALID {
				t.Errorf("%s offline_validity %s: %v, want EINVALID", at, v, err)
			}
		}
	}
}

// TestNewDeltaID_TimeOrdered: new delta ids sort in the order they were made, within a
// millisecond and across milliseconds, also from goroutines at once (each one's in strict order,
// all distinct); they carry their time; they pass Validate, as the random ids of earlier versions
// still do.
func TestNewDeltaID_TimeOrdered(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	prev := ""
	for i := range 20000 { // more than the 1,024 a millisecond holds
		id := loyalty.NewDeltaID()
		if id <= prev {
			t.Fatalf("id %d %q is not after %q", i, id, prev)
		}
		prev = id
	}
	first := loyalty.NewDeltaID()
	firstAt, _ := loyalty.DeltaIDTime(first)
	for now := time.Now(); !now.Truncate(time.Millisecond).After(firstAt); now = time.Now() {
		// the clock has not reached the next millisecond yet: wait for it, no sleeping
	}
	later := loyalty.NewDeltaID()
	if later <= first {
		t.Errorf("%q, made in a later millisecond than %q, sorts before it", later, first)
	}
	at, ok := loyalty.DeltaIDTime(later)
	if after := time.Now().Add(time.Second); !ok || at.Before(before) || at.After(after) {
		t.Errorf("DeltaIDTime(%q) = %v, %v; want a time in [%v, %v]", later, at, ok, before, after)
	}

	const goroutines, each = 4, 5000
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				ids[g] = append(ids[g], loyalty.NewDeltaID())
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for g, list := range ids {
		for i, id := range list {
			if seen[id] {
				t.Fatalf("id %q made twice", id)
			}
			seen[id] = true
			if i > 0 && id <= list[i-1] {
				t.Fatalf("goroutine %d: %q is not after %q", g, id, list[i-1])
			}
		}
	}

	for _, id := range []string{later, "d" + rand.Text()} {
		d := loyalty.Delta{ID: id, Store: "s1", Member: "m1", Kind: loyalty.KindEarn, Points: 1, Amount: 100, Currency: "EUR", OccurredAt: time.Now()}
		if err := d.Validate(); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	if len(later) != len("d"+rand.Text()) {
		t.Errorf("%q is %d characters; the random ids were %d", later, len(later), len("d"+rand.Text()))
	}
}

func TestAddSaturating(t *testing.T) {
	cases := []struct{ a, b, want int64 }{
		{1, 2, 3},
		{-5, 3, -2},
		{math.MaxInt64, 1, math.MaxInt64},
		{math.MaxInt64 - loyalty.MaxPoints + 1, loyalty.MaxPoints, math.MaxInt64},
		{math.MaxInt64 - loyalty.MaxPoints, loyalty.MaxPoints, math.MaxInt64},
		{math.MinInt64, -1, math.MinInt64},
		{math.MinInt64 + 10, -11, math.MinInt64},
		{math.MinInt64 + 10, -10, math.MinInt64},
		{math.MinInt64, math.MaxInt64, -1},
		{math.MaxInt64, math.MinInt64, -1},
	}
	for _, c := range cases {
		if got := loyalty.AddSaturating(c.a, c.b); got != c.want {
			t.Errorf("loyalty.AddSaturating(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	// Ten million rows of the most points one row may carry pass the largest int64.
	var sum int64
	for range 10_000_000 {
		sum = loyalty.AddSaturating(sum, loyalty.MaxPoints)
	}
	if sum != math.MaxInt64 {
		t.Errorf("10M rows of %d points: sum %d, want it held at %d", int64(loyalty.MaxPoints), sum, int64(math.MaxInt64))
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"plain ünïcode 日本":      "plain ünïcode 日本",
		"\x1b[2Jrow\nfake\trow": "?[2Jrow?fake?row",
		"bad \xff byte\r":       "bad ? byte?",
		"bell\a and \u0085":     "bell? and ?",
	} {
		if got := loyalty.Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
