package hub_test

import (
	"context"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// refundOf is a store's partial refund delta of sale, made with the order core as an agent makes it.
func refundOf(t *testing.T, sale loyalty.Delta, before []loyalty.Delta, amount int64, lines []loyalty.Line, p *loyalty.Program) loyalty.Delta {
	t.Helper()
	r := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: sale.Store, Member: sale.Member, OrderID: sale.OrderID, OccurredAt: t0}
	if err := r.RefundPart(loyalty.OrderEntry{Delta: sale, Reversals: before}, loyalty.Refund{Amount: amount, Lines: lines}, p.PunchCardsOf()); err != nil {
		t.Fatal(err)
	}
	return r
}

// A store's partial refunds are applied when they take exactly their share, and refused when
// they take more points, more than is left of the sale, or refund a redemption in part; the full
// reversal of the rest then takes exactly what is left. The member's tier counts the spend that
// was not refunded.
func TestRefund_PartialFromAStore(t *testing.T) {
	h := openHub(t)
	p := loyalty.DefaultProgram()
	sale := earn("s1", "m1", 10000) // 100 points
	sale.OrderID = "A-1"
	mustApply(t, h, "s1", sale)

	r1 := refundOf(t, sale, nil, 2550, nil, &p)
	if r1.Points != -25 {
		t.Fatalf("refund of 25.50 of 100.00 (100 points): %d points, want -25", r1.Points)
	}
	forged := r1
	forged.ID, forged.Points = loyalty.NewDeltaID(), -60
	mustReject(t, h, "s1", forged, loyalty.EINVALID)
	mustApply(t, h, "s1", r1)

	tooMuch := refundOf(t, sale, []loyalty.Delta{r1}, 7450, nil, &p)
	tooMuch.ID, tooMuch.Amount = loyalty.NewDeltaID(), 7451
	mustReject(t, h, "s1", tooMuch, loyalty.EINVALID)

	red := redeem("s1", "m1", "coffee", 50)
	red.OrderID = "A-1"
	mustApply(t, h, "s1", red)
	partRedeem := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Reverses: red.ID,
		Points: 25, Amount: 100, OccurredAt: t0}
	mustReject(t, h, "s1", partRedeem, loyalty.EINVALID)

	rest := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", OrderID: "A-1", OccurredAt: t0}
	rest.Undo(loyalty.OrderEntry{Delta: sale, Reversals: []loyalty.Delta{r1}})
	if rest.Points != -75 {
		t.Fatalf("the rest: %d points, want -75", rest.Points)
	}
	mustApply(t, h, "s1", rest)
	if b := balance(t, h, "m1"); b != -50 {
		t.Errorf("balance %d after a sale of 100 points refunded in two parts and a coffee; want -50", b)
	}
	again := refundOf(t, sale, nil, 100, nil, &p)
	mustReject(t, h, "s1", again, loyalty.ECONFLICT)
	mustCheck(t, h)
}

// Online partial refunds: by amount, then by lines (taking the espresso punches back), each its
// own idempotent call; a retry answers the first receipt; the full refund takes the rest. A
// Silver tier earned with the sale's spend is lost when the refunds take the spend below the
// threshold.
func TestRefund_PartialOnline(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 10, Reward: "coffee"}}
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
			{ID: "member", Name: "Member", Multiplier: 1000}, {ID: "silver", Name: "Silver", Threshold: 30000, Multiplier: 1000}}}
	})
	lines := []loyalty.Line{{SKU: "grinder", Qty: 1, Amount: 30000}, {SKU: "espresso", Qty: 4, Amount: 1000}}
	sale, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-1", MemberID: "m1", Amount: 31000, Currency: "EUR", Lines: lines})
	if err != nil || sale.Points != 310 {
		t.Fatalf("sale: %+v, %v", sale, err)
	}
	if m, _ := h.Member(ctx, "m1", 0); m.Tier != "silver" || m.Punches["espresso"] != 4 {
		t.Fatalf("after the sale: tier %q, punches %v; want silver, 4", m.Tier, m.Punches)
	}
	byLines := loyalty.ReverseRequest{OrderID: "W-1", RefundID: "R-1", Lines: []loyalty.Line{{SKU: "espresso", Qty: 2, Amount: 500}}}
	r1, err := h.Reverse(ctx, byLines)
	if err != nil || r1.Points != -5 {
		t.Fatalf("refund of two espressos (5.00): %+v, %v; want -5 points", r1, err)
	}
	if retry, err := h.Reverse(ctx, byLines); err != nil || retry.Deltas[0] != r1.Deltas[0] {
		t.Errorf("a retry of refund R-1: %+v, %v; want the first receipt", retry, err)
	}
	if m, _ := h.Member(ctx, "m1", 0); m.Tier != "silver" || m.Punches["espresso"] != 2 {
		t.Errorf("after the refund of 5.00 of 310.00: tier %q, punches %v; want silver (305.00 spent), 2 punches", m.Tier, m.Punches)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1", RefundID: "R-2", Amount: 30501}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a refund of more than is left: %v; want EINVALID", err)
	}
	r2, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1", RefundID: "R-2", Amount: 10000})
	if err != nil || r2.Points != -100 {
		t.Fatalf("refund of 100.00: %+v, %v; want -100", r2, err)
	}
	if m, _ := h.Member(ctx, "m1", 0); m.Tier != "member" {
		t.Errorf("spend of 205.00 left, under Silver's 300.00: tier %q", m.Tier)
	}
	all, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1"})
	if err != nil || all.Points != -205 {
		t.Fatalf("the full refund of the rest: %+v, %v; want -205", all, err)
	}
	if m, _ := h.Member(ctx, "m1", 0); m.Balance != 0 || m.Punches["espresso"] != 0 {
		t.Errorf("after the full refund: %+v; want balance 0, no punches", m)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1", RefundID: "R-3", Amount: 1}); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Errorf("a partial refund after the full one: %v; want ECONFLICT", err)
	}
	if cs, _ := h.Conflicts(ctx, 10); len(cs) != 0 {
		t.Errorf("conflicts %+v", cs)
	}
	mustCheck(t, h)
}

// A sale refunded in full by amount keeps its punch-card units (a refund by amount takes back no
// punches); the full reverse afterwards takes them back, with no points, and the check agrees.
func TestRefund_FullReverseAfterAmountRefundsTakesThePunches(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 10, Reward: "coffee"}}
	})
	lines := []loyalty.Line{{SKU: "espresso", Qty: 9, Amount: 2250}}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-9", MemberID: "m1", Amount: 2250, Currency: "EUR", Lines: lines}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-9", RefundID: "R-1", Amount: 2250}); err != nil {
		t.Fatalf("refund of the whole amount: %v", err)
	}
	if m, _ := h.Member(ctx, "m1", 0); m.Punches["espresso"] != 9 {
		t.Fatalf("after the refund by amount: punches %v, want the 9 kept", m.Punches)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-9", RefundID: "R-2", Amount: 1}); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Errorf("a refund by amount after the whole amount: %v; want ECONFLICT", err)
	}
	all, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-9"})
	if err != nil || all.Points != 0 {
		t.Fatalf("the full reverse of what is left: %+v, %v; want 0 points and the punches", all, err)
	}
	if m, _ := h.Member(ctx, "m1", 0); m.Punches["espresso"] != 0 || m.Balance != 0 {
		t.Errorf("after the full reverse: %+v; want no punches, balance 0", m)
	}
	if again, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-9"}); err != nil || len(again.Deltas) != 1 || again.Deltas[0] != all.Deltas[0] {
		t.Errorf("a retry of the full reverse: %+v, %v; want the first receipt", again, err)
	}
	mustCheck(t, h)
}

// A partial refund gives back its share of a points budget's charge, as of the points; the full
// refund of the rest gives back the rest, and the budget is where it started.
func TestRefund_PartialGivesBackItsShareOfABudget(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "points", Metric: loyalty.MetricPointsIssued, Limit: 100000}}
	})
	spent := func() int64 {
		t.Helper()
		bs, err := h.Budgets(ctx)
		if err != nil || len(bs) != 1 {
			t.Fatalf("budgets %+v, %v", bs, err)
		}
		return bs[0].Spent
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-1", MemberID: "m1", Amount: 9999, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	start := spent()
	if start != 99 {
		t.Fatalf("spent %d after a sale of 99 points", start)
	}
	r, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1", RefundID: "R-1", Amount: 3333})
	if err != nil || r.Points != -33 { // 99 × 3333 / 9999 = 33 exactly
		t.Fatalf("refund of a third: %+v, %v", r, err)
	}
	if got := spent(); got != start+r.Points {
		t.Errorf("spent %d after a refund of %d points; want %d", got, r.Points, start+r.Points)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1"}); err != nil {
		t.Fatal(err)
	}
	if got := spent(); got != 0 {
		t.Errorf("spent %d after the whole sale was refunded; want 0", got)
	}
}
