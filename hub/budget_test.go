package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// withProgram publishes a program built from the default one.
func withProgram(t testing.TB, h *hub.Hub, edit func(*loyalty.Program)) {
	t.Helper()
	p := loyalty.DefaultProgram()
	edit(&p)
	if _, err := h.SetProgram(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func fund(t testing.TB, h *hub.Hub, member string, points int64) {
	t.Helper()
	if _, err := h.Earn(context.Background(), loyalty.EarnRequest{OrderID: fmt.Sprintf("fund-%s-%d", member, points), MemberID: member,
		Amount: loyalty.Money(points * 100), Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
}

// TestBudgetBoundaries: for every metric, the redemption that reaches the limit passes and the
// next one is refused with EBUDGET.
func TestBudgetBoundaries(t *testing.T) {
	for _, tt := range []struct {
		name   string
		budget loyalty.Budget
		reward string
		amount loyalty.Money // order amount of each redemption
		passes int           // redemptions that fit exactly
	}{
		{"total redemptions", loyalty.Budget{ID: "b", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 3}, "coffee", 0, 3},
		{"redemptions of any reward", loyalty.Budget{ID: "b", Metric: loyalty.MetricRedemptions, Limit: 2}, "coffee", 0, 2},
		{"total discount", loyalty.Budget{ID: "b", Metric: loyalty.MetricDiscount, Limit: 1500}, "five-off", 0, 3},
		{"total order value", loyalty.Budget{ID: "b", Metric: loyalty.MetricOrderValue, Reward: "coffee", Limit: 10000}, "coffee", 2500, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := openHub(t)
			ctx := context.Background()
			withProgram(t, h, func(p *loyalty.Program) { p.Budgets = []loyalty.Budget{tt.budget} })
			fund(t, h, "m1", 10000)
			for i := range tt.passes + 1 {
				_, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprint("r", i), MemberID: "m1", RewardID: tt.reward, OrderAmount: tt.amount})
				if i < tt.passes && err != nil {
					t.Fatalf("redemption %d of %d: %v", i+1, tt.passes, err)
				}
				if i == tt.passes && loyalty.ErrorCode(err) != loyalty.EBUDGET {
					t.Fatalf("redemption %d, over the limit: %v, want EBUDGET", i+1, err)
				}
			}
			bs, _ := h.Budgets(ctx)
			if bs[0].Spent != tt.budget.Limit || bs[0].Available != 0 {
				t.Errorf("budget after: %+v", bs[0])
			}
			// A refund gives the budget back.
			if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "r0"}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "again", MemberID: "m1", RewardID: tt.reward, OrderAmount: tt.amount}); err != nil {
				t.Errorf("after a refund: %v", err)
			}
		})
	}
}

func TestBudget_PointsIssued(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 100}}
	})
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
		t.Fatalf("earning exactly the limit: %v", err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "e2", MemberID: "m1", Amount: 100, Currency: "EUR"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("one point over: %v, want EBUDGET", err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "e3", MemberID: "m1", Amount: 99, Currency: "EUR"}); err != nil {
		t.Errorf("an earn of 0 points spends nothing: %v", err)
	}
}

// TestMemberLimitBoundaries: the Nth redemption in a period passes, the N+1th is refused, and
// the next period starts over. Periods use the event time, in UTC.
func TestMemberLimitBoundaries(t *testing.T) {
	for _, tt := range []struct {
		period string
		start  time.Time // inside a period
		next   time.Time // the first instant of the next period
	}{
		{loyalty.PeriodDay, time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
		{loyalty.PeriodWeek, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}, // Mondays
		{loyalty.PeriodMonth, time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{loyalty.PeriodTotal, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Time{}},
	} {
		t.Run(tt.period, func(t *testing.T) {
			h := openHub(t)
			ctx := context.Background()
			now := tt.start
			h.Now = func() time.Time { return now }
			withProgram(t, h, func(p *loyalty.Program) {
				p.MemberLimits = []loyalty.MemberLimit{{Reward: "coffee", Period: tt.period, Max: 2}}
			})
			fund(t, h, "m1", 1000)
			redeem := func(order string) error {
				_, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: order, MemberID: "m1", RewardID: "coffee"})
				return err
			}
			if err := redeem("a"); err != nil {
				t.Fatal(err)
			}
			if err := redeem("b"); err != nil {
				t.Fatalf("2nd of 2: %v", err)
			}
			if err := redeem("c"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
				t.Fatalf("3rd of 2: %v, want EBUDGET", err)
			}
			if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "d", MemberID: "m1", RewardID: "five-off"}); err != nil {
				t.Errorf("another reward is not limited: %v", err)
			}
			if tt.next.IsZero() {
				return
			}
			now = tt.next.Add(-time.Millisecond)
			if err := redeem("e"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
				t.Fatalf("last instant of the period: %v, want EBUDGET", err)
			}
			now = tt.next
			if err := redeem("f"); err != nil {
				t.Fatalf("first instant of the next period: %v", err)
			}
		})
	}
}

func TestKillSwitch_Online(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	fund(t, h, "m1", 1000)
	withProgram(t, h, func(p *loyalty.Program) { p.Rewards[0].Disabled = true })
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r1", MemberID: "m1", RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("switched-off reward: %v, want EBUDGET", err)
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r2", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Errorf("other rewards go on: %v", err)
	}
}

// TestLeases: a store's lease never takes a budget past its limit, is renewed while the store
// pulls, ends at TTL + margin when it does not, is settled exactly at the store's next pull, and is
// revoked by the kill switch.
func TestLeases(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	h.Lease = hub.LeaseConfig{TTL: 10 * time.Minute, Margin: time.Minute, Min: 1, Share: 0.5}
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 6}}
	})
	pull := func(store string) []string {
		t.Helper()
		ch, err := h.Pull(ctx, store, lsync.Pull{Cursor: 0, Limit: 100, Flushed: true})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range ch.Leases {
			out = append(out, fmt.Sprintf("%s:%d:%s", l.Budget, l.Granted, l.State))
		}
		return out
	}
	status := func() hub.BudgetStatus {
		bs, err := h.Budgets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return bs[0]
	}
	if got := fmt.Sprint(pull("s1")); got != "[coffees:3:active]" {
		t.Fatalf("s1 lease: %s", got)
	}
	if got := fmt.Sprint(pull("s2")); got != "[coffees:3:active]" {
		t.Fatalf("s2 lease: %s", got)
	}
	if s := status(); s.Outstanding != 6 || s.Available != 0 {
		t.Fatalf("all quota leased: %+v", s)
	}
	// Nothing is left for online redemptions.
	fund(t, h, "m1", 1000)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web", MemberID: "m1", RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("online with everything leased: %v, want EBUDGET", err)
	}
	// s1 spends 2 of its 3 offline, then goes dark; s2 keeps pulling.
	var s1Lease string
	for _, l := range mustLeases(t, h, "s1") {
		s1Lease = l.ID
	}
	for i := range 2 {
		d := redeem("s1", "m1", "coffee", 50)
		d.RuleVersion, d.Leases = 2, map[string]string{"coffees": s1Lease} // the version its lease came with
		d.ID = fmt.Sprint("x", i)
		pushOK(t, h, "s1", d)
	}
	if s := status(); s.Spent != 2 || s.Outstanding != 4 {
		t.Fatalf("after s1 spent 2: %+v", s)
	}
	now = now.Add(7 * time.Minute)
	pull("s2") // renews s2 (less than TTL/2 left)
	now = now.Add(5 * time.Minute)
	if n, err := h.ExpireLeases(ctx); err != nil || n != 1 {
		t.Fatalf("expire after 12 minutes: %d, %v; want s1's lease only", n, err)
	}
	// s1's unspent 1 stays reserved until s1 reports: it may have spent it offline.
	if s := status(); s.Spent+s.Outstanding != 6 {
		t.Fatalf("expired lease returned early: %+v", s)
	}
	if _, err := h.WriteOff(ctx, "s2"); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Errorf("write-off of a store with an active lease: %v", err)
	}
	// s1 comes back having spent its last one offline; its next pull settles the lease exactly.
	d := redeem("s1", "m1", "coffee", 50)
	d.RuleVersion, d.Leases = 2, map[string]string{"coffees": s1Lease}
	pushOK(t, h, "s1", d)
	if got := fmt.Sprint(pull("s1")); got != "[]" {
		t.Fatalf("s1's leases after settling (nothing left to grant): %s", got)
	}
	if s := status(); s.Spent != 3 || s.Outstanding != 3 || s.Spent+s.Outstanding > s.Limit {
		t.Fatalf("after settling: %+v", s)
	}
	// The kill switch revokes s2's lease at its next pull.
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 6}}
		p.Rewards[0].Disabled = true
	})
	if got := fmt.Sprint(pull("s2")); got != "[coffees:3:ended]" {
		t.Fatalf("s2 after the kill switch: %s", got)
	}
	pull("s2") // next pull: the store pushed what it spent before it heard; settle
	if s := status(); s.Outstanding != 0 || s.Spent != 3 {
		t.Fatalf("after revoking and settling: %+v", s)
	}
}

func mustLeases(t *testing.T, h *hub.Hub, store string) []hub.Lease {
	t.Helper()
	bs, err := h.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []hub.Lease
	for _, b := range bs {
		for _, l := range b.Leases {
			if l.Store == store {
				out = append(out, l)
			}
		}
	}
	return out
}

// TestEarnCapBoundary: at most 100 points a day from purchases. Online the cap is exact: the
// earn that crosses it is reduced, the next earns nothing, the next day starts over. Stores
// offline together may pass it; the hub applies their earns and flags an earn_cap conflict.
func TestEarnCapBoundary(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
	})
	earnOnline := func(order string, amount loyalty.Money) int64 {
		t.Helper()
		r, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: amount, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return r.Points
	}
	for _, c := range []struct {
		order  string
		amount loyalty.Money
		want   int64
	}{{"a", 6000, 60}, {"b", 4000, 40}, {"c", 100, 0}} {
		if got := earnOnline(c.order, c.amount); got != c.want {
			t.Errorf("earn %s of %d: %d points, want %d", c.order, c.amount, got, c.want)
		}
	}
	now = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	if got := earnOnline("d", 100); got != 1 {
		t.Errorf("the next day: %d points, want 1", got)
	}
	// Two offline stores, which had version 2, each award m2 80 points the same day.
	syncStores(t, h)
	for i, store := range []string{"s1", "s2"} {
		d := earn(store, "m2", 8000)
		d.OccurredAt = now
		d.RuleVersion = 2
		if r := pushOK(t, h, store, d).Results[0]; r.Status != "applied" {
			t.Fatalf("offline earn %d: %+v", i, r)
		}
	}
	cs, _ := h.Conflicts(ctx, 10)
	if len(cs) != 1 || cs[0].Kind != hub.ConflictEarnCap || cs[0].Member != "m2" || cs[0].Amount != 60 {
		t.Errorf("conflicts: %+v", cs)
	}
	// A store cannot award more than the rule gives, cap or not.
	d := earn("s1", "m3", 100)
	d.Points, d.RuleVersion = 5, 2
	if r := pushOK(t, h, "s1", d).Results[0]; r.Code != loyalty.ENOTFOUND && r.Code != loyalty.EINVALID {
		t.Errorf("earn above the rule under a cap: %+v", r)
	}
}

// TestActions: signup points on creation; a review at most twice a month; a social follow
// capped at 30 points a month however many times it is posted; a retry is the first answer.
func TestActions(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: "signup", Points: 100}, {ID: "review", Points: 20, MaxTimes: 2, Period: loyalty.PeriodMonth},
			{ID: "social_follow", Points: 20}}
		p.EarnCaps = []loyalty.EarnCap{{Rule: "social_follow", Period: loyalty.PeriodMonth, MaxPoints: 30}}
	})
	m, err := h.CreateMember(ctx, loyalty.Member{ID: "new"})
	if err != nil || m.Balance != 100 {
		t.Fatalf("signup: %+v, %v", m, err)
	}
	act := func(order, action string) (loyalty.Receipt, error) {
		return h.Action(ctx, loyalty.ActionRequest{OrderID: order, MemberID: "new", Action: action})
	}
	for i, want := range []string{"", "", loyalty.EBUDGET} {
		if _, err := act(fmt.Sprint("review-", i), "review"); loyalty.ErrorCode(err) != want {
			t.Fatalf("review %d: %v, want %q", i+1, err, want)
		}
	}
	if r, err := act("review-0", "review"); err != nil || r.Points != 20 {
		t.Errorf("retry of the first review: %+v, %v", r, err)
	}
	for i, want := range []int64{20, 10, 0} {
		if r, err := act(fmt.Sprint("follow-", i), "social_follow"); err != nil || r.Points != want {
			t.Errorf("follow %d: %+v, %v; want %d points", i+1, r, err, want)
		}
	}
	now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if _, err := act("review-dec", "review"); err != nil {
		t.Errorf("a review the next month: %v", err)
	}
	if _, err := act("x", "dance"); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("unknown action: %v", err)
	}
	mustCheck(t, h)
}

// TestActions_TheHubsOwn: the sign-up and birthday actions have no max_times (the hub gives each
// at most once, a year for birthdays), so a caller with an online key must not award them under
// order ids of its own: the birthday is refused outright, the sign-up but for its one order id,
// whose retry gets the first answer. Nothing is awarded by the refused calls.
func TestActions_TheHubsOwn(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: loyalty.ActionSignup, Points: 100}, {ID: loyalty.ActionBirthday, Points: 200}}
	})
	m, err := h.CreateMember(ctx, loyalty.Member{ID: "new"})
	if err != nil || m.Balance != 100 {
		t.Fatalf("signup: %+v, %v", m, err)
	}
	for _, c := range []struct{ order, action, code string }{
		{"x1", loyalty.ActionBirthday, loyalty.EFORBIDDEN},
		{"birthday-2026-new", loyalty.ActionBirthday, loyalty.EFORBIDDEN},
		{"x2", loyalty.ActionSignup, loyalty.EINVALID},
		{"signup-m1", loyalty.ActionSignup, loyalty.EINVALID}, // another member's key
	} {
		if r, err := h.Action(ctx, loyalty.ActionRequest{OrderID: c.order, MemberID: "new", Action: c.action}); loyalty.ErrorCode(err) != c.code {
			t.Errorf("%s as %s: %+v, %v; want %s", c.action, c.order, r, err, c.code)
		}
	}
	if r, err := h.Action(ctx, loyalty.ActionRequest{OrderID: loyalty.SignupOrderID("new"), MemberID: "new", Action: loyalty.ActionSignup}); err != nil || r.Points != 100 || r.Balance != 100 {
		t.Errorf("the sign-up's retry: %+v, %v; want its first answer", r, err)
	}
	if got := balance(t, h, "new"); got != 100 {
		t.Errorf("balance %d, want the sign-up's 100 alone", got)
	}
}

// TestTiers: crossing the exact threshold upgrades (a ledgered tier delta, then the multiplier
// applies); a year without spending downgrades at requalification; a store claiming a tier the
// program does not have is refused.
func TestTiers(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
			{ID: "member", Threshold: 0, Multiplier: 1000}, {ID: "silver", Threshold: 30000, Multiplier: 1500}}}
	})
	earn := func(order string, amount loyalty.Money) loyalty.Receipt {
		t.Helper()
		r, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: amount, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tier := func() string { v, _ := h.Member(ctx, "m1", 0); return v.Tier }
	earn("a", 29999)
	if got := tier(); got != "member" {
		t.Fatalf("one cent below the threshold: %s", got)
	}
	earn("b", 1)
	if got := tier(); got != "silver" {
		t.Fatalf("at the threshold: %s, want silver", got)
	}
	if r := earn("c", 1000); r.Points != 15 || r.Earn.TierBonus != 5 {
		t.Errorf("silver earns 1.5x: %+v", r.Earn)
	}
	v, _ := h.Member(ctx, "m1", 100)
	tierDeltas := 0
	for _, e := range v.Ledger {
		if e.Kind == loyalty.KindTier {
			tierDeltas++
		}
	}
	if tierDeltas != 1 {
		t.Errorf("%d tier deltas in the ledger, want 1 (the upgrade; entry placement is not ledgered)", tierDeltas)
	}
	now = now.AddDate(1, 1, 0) // 13 months without a purchase
	if n, err := h.Requalify(ctx); err != nil || n != 1 || tier() != "member" {
		t.Errorf("requalify after a quiet year: %d changed, %v, tier %s", n, err, tier())
	}
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindEarn, Points: 20, Amount: 1000,
		Currency: "EUR", Tier: "platinum", RuleVersion: 2, OccurredAt: now}
	if r := pushOK(t, h, "s1", d).Results[0]; r.Code != loyalty.EINVALID {
		t.Errorf("a store claiming tier platinum: %+v", r)
	}
	mustCheck(t, h)
}

// TestClockSkewReported: a store whose clock is more than MaxClockSkew off is flagged.
func TestClockSkewReported(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	for store, offset := range map[string]time.Duration{"s1": 2 * time.Second, "s2": -(hub.MaxClockSkew + time.Minute)} {
		if err := h.Seen(ctx, store, lsync.Health{Connected: true, Ping: true, At: t0, ClockOffsetMS: offset.Milliseconds()}); err != nil {
			t.Fatal(err)
		}
	}
	stores, err := h.Stores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		if want := s.ID == "s2"; s.Health.ClockSkewed != want {
			t.Errorf("%s: clock_skewed %v (offset %dms), want %v", s.ID, s.Health.ClockSkewed, s.Health.ClockOffsetMS, want)
		}
	}
}

// TestExpiryOnTheDay: points expire exactly after_days after the last earn or redemption; the
// member is listed as expiring soon remind_days before; activity starts the clock again.
func TestExpiryOnTheDay(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Expiry = &loyalty.Expiry{Mode: "inactivity", AfterDays: 30, RemindDays: 7}
	})
	fund(t, h, "m1", 100) // last activity: now
	fund(t, h, "m2", 100)
	expires := now.AddDate(0, 0, 30)
	now = expires.AddDate(0, 0, -7)
	if n, err := h.ExpirePoints(ctx); err != nil || n != 0 {
		t.Fatalf("7 days before: expired %d, %v", n, err)
	}
	if soon := mustExpiringSoon(t, h); len(soon) != 2 {
		t.Fatalf("7 days before: expiring soon %+v, want m1 and m2", soon)
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "keep", MemberID: "m2", RewardID: "coffee"}); err != nil {
		t.Fatal(err) // m2 is active again
	}
	now = expires.Add(-time.Millisecond)
	if n, _ := h.ExpirePoints(ctx); n != 0 {
		t.Fatalf("a millisecond before: %d expired", n)
	}
	now = expires
	if n, err := h.ExpirePoints(ctx); err != nil || n != 1 {
		t.Fatalf("on the day: %d expired, %v", n, err)
	}
	if b := balance(t, h, "m1"); b != 0 {
		t.Errorf("m1 after expiry: %d", b)
	}
	if b := balance(t, h, "m2"); b != 50 {
		t.Errorf("m2, active 23 days ago: %d, want 50", b)
	}
	v, _ := h.Member(ctx, "m1", 10)
	if v.Ledger[0].Kind != loyalty.KindExpire || v.Ledger[0].Points != -100 {
		t.Errorf("ledger: %+v", v.Ledger[0])
	}
	mustCheck(t, h)
}

// TestReferral: give 50, get 100 at the referred member's first purchase of at least 20.00, from
// a store; never twice; self-referral and unknown codes refused.
func TestReferral(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) { p.Referral = &loyalty.Referral{Give: 50, Get: 100, MinAmount: 2000} })
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "ann", Email: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]loyalty.Member{
		"self, same email": {ID: "ann2", Email: "ANN@example.com", ReferredBy: "ann"},
		"unknown code":     {ID: "bob", ReferredBy: "nobody"},
	} {
		if _, err := h.CreateMember(ctx, m); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "bea", Email: "bea@example.com", ReferredBy: "ann", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	// A small purchase does not qualify; the first qualifying one, at a store, pays both once.
	pushOK(t, h, "s1", earn("s1", "bea", 1999))
	if b := balance(t, h, "ann"); b != 0 {
		t.Fatalf("after a 19.99 purchase: referrer has %d", b)
	}
	// The store's ack tells bea's balance, not that of ann, whom the store does not hold.
	if ack := pushOK(t, h, "s1", earn("s1", "bea", 2000)); len(ack.Balances) != 1 || ack.Balances[0].Member != "bea" {
		t.Errorf("the qualifying sale's ack tells balances %+v, want bea's alone", ack.Balances)
	}
	pushOK(t, h, "s1", earn("s1", "bea", 5000))
	if a, b := balance(t, h, "ann"), balance(t, h, "bea"); a != 100 || b != 19+20+50+50 {
		t.Errorf("after qualifying: ann %d (want 100), bea %d (want 139)", a, b)
	}
	// A store cannot mint referral bonuses.
	d := earn("s1", "bea", 0)
	d.Rule, d.Points = loyalty.RuleReferral, 50
	if r := pushOK(t, h, "s1", d).Results[0]; r.Code != loyalty.EUNAUTHORIZED {
		t.Errorf("a store's referral delta: %+v", r)
	}
	mustCheck(t, h)
}
