package hub_test

import (
	"context"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// referredHub is a hub whose program pays 50 points to a referred member and 100 to the referrer
// at a purchase of 20.00 or more, and charges them to a points budget; ann refers bea and cid
// (ann and bea of home store s1).
func referredHub(t *testing.T) *hub.Hub {
	t.Helper()
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Referral = &loyalty.Referral{Give: 50, Get: 100, MinAmount: 2000}
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 100_000}}
	})
	for _, m := range []loyalty.Member{{ID: "ann", Email: "ann@example.com", HomeStore: "s1"},
		{ID: "bea", Email: "bea@example.com", ReferredBy: "ann", HomeStore: "s1"}, {ID: "cid", Email: "cid@example.com", ReferredBy: "ann"}} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// TestReferral_RefundTakesTheBonusesBack: a purchase bought and returned earns no referral bonus.
// Before, a member could sign up accounts referred by themselves, buy with each and return it,
// and keep 150 points an account.
func TestReferral_RefundTakesTheBonusesBack(t *testing.T) {
	h := referredHub(t)
	ctx := context.Background()
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: "cid", Amount: 2000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if a, c := balance(t, h, "ann"), balance(t, h, "cid"); a != 100 || c != 20+50 {
		t.Fatalf("after the qualifying purchase: ann %d, cid %d, want 100 and 70", a, c)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "web-1"}); err != nil {
		t.Fatal(err)
	}
	if a, c := balance(t, h, "ann"), balance(t, h, "cid"); a != 0 || c != 0 {
		t.Errorf("after the purchase was returned: ann %d, cid %d, want 0 and 0", a, c)
	}
	if s := budgetStatus(t, h, "pts"); s.Spent != 0 {
		t.Errorf("points budget spent %d after everything was taken back, want 0", s.Spent)
	}
	// The next qualifying purchase gives the bonuses again, once.
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-2", MemberID: "cid", Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-3", MemberID: "cid", Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if a, c := balance(t, h, "ann"), balance(t, h, "cid"); a != 100 || c != 30+30+50 {
		t.Errorf("after two more purchases: ann %d, cid %d, want 100 and 110", a, c)
	}
	noConflicts(t, h)
	mustCheck(t, h)
}

// TestReferral_WhatARefundLeaves: a store's refund takes the bonuses back only when it leaves the
// sale that gave them short of min_amount; refunds of other sales, and partial refunds that leave
// enough, keep them.
func TestReferral_WhatARefundLeaves(t *testing.T) {
	h := referredHub(t)
	ctx := context.Background()
	qualifying := earn("s1", "bea", 5000)
	other := earn("s1", "bea", 2500)
	pushOK(t, h, "s1", qualifying, other)
	if a := balance(t, h, "ann"); a != 100 {
		t.Fatalf("ann has %d after bea's purchase, want 100", a)
	}
	// Another sale, returned in full: the bonuses stay.
	mustApply(t, h, "s1", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "bea", Kind: loyalty.KindReverse,
		Points: -25, Reverses: other.ID, RuleVersion: 1, OccurredAt: t0})
	// 20.00 of 50.00 given back: 30.00 still qualifies.
	mustApply(t, h, "s1", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "bea", Kind: loyalty.KindReverse,
		Points: -20, Amount: 2000, Currency: "EUR", Reverses: qualifying.ID, RuleVersion: 1, OccurredAt: t0})
	if a, b := balance(t, h, "ann"), balance(t, h, "bea"); a != 100 || b != 30+50 {
		t.Fatalf("after refunds that leave a qualifying purchase: ann %d, bea %d, want 100 and 80", a, b)
	}
	// 10.01 more: 19.99 is left, short of 20.00.
	mustApply(t, h, "s1", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "bea", Kind: loyalty.KindReverse,
		Points: -10, Amount: 1001, Currency: "EUR", Reverses: qualifying.ID, RuleVersion: 1, OccurredAt: t0})
	if a, b := balance(t, h, "ann"), balance(t, h, "bea"); a != 0 || b != 20 {
		t.Errorf("after the purchase fell below 20.00: ann %d, bea %d, want 0 and 20", a, b)
	}
	v, err := h.Member(ctx, "bea", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.ReferralPaid {
		t.Error("bea's referral bonus is still recorded as given")
	}
	noConflicts(t, h)
	mustCheck(t, h)
}

// TestReferral_SpentBonusTakenBack: a referrer who spent the bonus of a purchase that was then
// returned is left below zero, and the hub flags it as it flags any refund of spent points.
func TestReferral_SpentBonusTakenBack(t *testing.T) {
	h := referredHub(t)
	ctx := context.Background()
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: "cid", Amount: 2000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, h, "s1", redeem("s1", "ann", "coffee", 50))
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "web-1"}); err != nil {
		t.Fatal(err)
	}
	if a := balance(t, h, "ann"); a != -50 {
		t.Errorf("ann has %d, want -50", a)
	}
	cs, err := h.Conflicts(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Kind != hub.ConflictOverdraft || cs[0].Member != "ann" || cs[0].Amount != 50 {
		t.Errorf("conflicts %+v, want one overdraft of ann's 50 points", cs)
	}
}

// TestReferral_ErasedReferrer: an erased member's id is no referral code (the same refusal as an
// unknown one), and a member referred before their referrer was erased still gets their bonus at
// their first qualifying purchase, while the erased referrer gets none: their codes name no one,
// so the points could never be spent. Before, both sign-up and bonus went through.
func TestReferral_ErasedReferrer(t *testing.T) {
	h := referredHub(t)
	ctx := context.Background()
	if _, err := h.EraseMember(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	_, err := h.CreateMember(ctx, loyalty.Member{ID: "dan", Email: "dan@example.com", ReferredBy: "ann"})
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "belongs to no member") {
		t.Errorf("a sign-up referred by an erased member: %v; want EINVALID, the code belongs to no member", err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-c", MemberID: "cid", Amount: 2000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if a, c := balance(t, h, "ann"), balance(t, h, "cid"); a != 0 || c != 20+50 {
		t.Errorf("after cid's qualifying purchase: ann (erased) %d, cid %d; want 0 and 70", a, c)
	}
}
