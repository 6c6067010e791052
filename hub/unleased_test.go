package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func budgetStatus(t *testing.T, h *hub.Hub, id string) hub.BudgetStatus {
	t.Helper()
	bs, err := h.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.ID == id {
			return b
		}
	}
	t.Fatalf("no budget %s in %+v", id, bs)
	return hub.BudgetStatus{}
}

func noConflicts(t *testing.T, h *hub.Hub) {
	t.Helper()
	cs, err := h.Conflicts(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Errorf("conflicts: %+v, want none", cs)
	}
}

// The hub's own referral bonuses are charged to a points_issued budget directly, without a lease
// and without an `unleased` conflict; they are paid only when the budget has room for both, and
// otherwise wait for the member's next qualifying purchase, so the budget is never exceeded.
func TestUnleased_ReferralBonusesAreChargedDirectly(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Referral = &loyalty.Referral{Give: 50, Get: 100, MinAmount: 2000}
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 200}}
	})
	for _, m := range []loyalty.Member{{ID: "ann"}, {ID: "bea", ReferredBy: "ann"}, {ID: "cid", ReferredBy: "ann"}} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	buy := func(order, member string) {
		t.Helper()
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: member, Amount: 2000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	buy("b1", "bea") // 20 points, and the bonuses: 50 for bea, 100 for ann
	if a, b := balance(t, h, "ann"), balance(t, h, "bea"); a != 100 || b != 70 {
		t.Errorf("after bea's purchase: ann %d (want 100), bea %d (want 70)", a, b)
	}
	if s := budgetStatus(t, h, "pts"); s.Spent != 170 {
		t.Errorf("points budget spent %d, want 170: the bonuses count", s.Spent)
	}
	buy("c1", "cid") // 20 points: 190 of 200; the bonuses (150) do not fit and wait
	if a, c := balance(t, h, "ann"), balance(t, h, "cid"); a != 100 || c != 20 {
		t.Errorf("with the budget used up: ann %d (want 100), cid %d (want 20)", a, c)
	}
	if s := budgetStatus(t, h, "pts"); s.Spent != 190 || s.Spent+s.Outstanding > s.Limit {
		t.Errorf("points budget: %+v, want 190 spent, within its limit", s)
	}
	withProgram(t, h, func(p *loyalty.Program) { // the operator raises the limit
		p.Referral = &loyalty.Referral{Give: 50, Get: 100, MinAmount: 2000}
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 1000}}
	})
	buy("c2", "cid") // now they are paid, once
	buy("c3", "cid")
	if a, c := balance(t, h, "ann"), balance(t, h, "cid"); a != 200 || c != 20+20+50+20 {
		t.Errorf("after the limit was raised: ann %d (want 200), cid %d (want 110)", a, c)
	}
	if s := budgetStatus(t, h, "pts"); s.Spent != 190+40+150 {
		t.Errorf("points budget spent %d, want 380", s.Spent)
	}
	noConflicts(t, h)
	mustCheck(t, h)
}

// A store's referral-qualifying sale spends its lease; the bonuses the hub adds are charged to the
// budget directly. Nothing is flagged.
func TestUnleased_ReferralAfterAStoreSale(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Referral = &loyalty.Referral{Give: 50, Get: 100}
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 10000}}
	})
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "bea", ReferredBy: "m2", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	d := earn("s1", "bea", 2000)
	d.RuleVersion, d.Leases = 2, map[string]string{"pts": mustLeases(t, h, "s1")[0].ID}
	mustApply(t, h, "s1", d)
	if s := budgetStatus(t, h, "pts"); s.Spent != 20+150 {
		t.Errorf("points budget spent %d, want 170", s.Spent)
	}
	noConflicts(t, h)
}

// A store that made a redemption under a rule version without a budget (the budget came in a
// version it had not heard of) could not have had a lease of it: the budget does not count that
// redemption, and it is no conflict. Under a version with the budget, it counts, from the lease.
func TestUnleased_BudgetTheStoresVersionDidNotHave(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	fund(t, h, "m1", 1000)
	now = t0.Add(time.Hour)
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 10}}
	})
	// s1 was offline with version 1 and redeemed a coffee after version 2 came out.
	now = t0.Add(2 * time.Hour)
	old := redeem("s1", "m1", "coffee", 50)
	old.OccurredAt = t0.Add(90 * time.Minute)
	mustApply(t, h, "s1", old)
	if s := budgetStatus(t, h, "coffees"); s.Spent != 0 {
		t.Errorf("coffee budget spent %d: it counted a redemption made under a version without it", s.Spent)
	}
	noConflicts(t, h)
	// Its refund gives back nothing either.
	rev := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: 50,
		Reverses: old.ID, RuleVersion: 1, OccurredAt: now}
	mustApply(t, h, "s1", rev)
	if s := budgetStatus(t, h, "coffees"); s.Spent != 0 {
		t.Errorf("coffee budget spent %d after the refund, want 0", s.Spent)
	}
	// Once s1 has version 2 and a lease, its coffees count.
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	cur := redeem("s1", "m1", "coffee", 50)
	cur.RuleVersion, cur.OccurredAt = 2, now
	cur.Leases = map[string]string{"coffees": mustLeases(t, h, "s1")[0].ID}
	mustApply(t, h, "s1", cur)
	if s := budgetStatus(t, h, "coffees"); s.Spent != 1 {
		t.Errorf("coffee budget spent %d, want 1", s.Spent)
	}
	noConflicts(t, h)
}
