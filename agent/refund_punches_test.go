package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// A sale refunded in full by amount (partial refunds whose amounts add up to the sale, which is
// all the till page's refund form sends) keeps its punch-card units: a refund by amount takes
// back no punches. A full reverse afterwards takes back what they left (docs/API.md), so a member
// who bought 9 espressos and returned them all does not fill the card of 10 with the next one.
func TestReverse_AfterAmountRefundsTakesThePunchesLeft(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	offlineBudget(t, ta, 10, time.Hour, func(p *loyalty.Program) {
		p.Budgets = nil
		p.PunchCards = []loyalty.PunchCard{{ID: "card", SKU: "espresso", Buy: 10, Reward: "coffee"}}
	})
	buy := func(order string, n int64) loyalty.Receipt {
		t.Helper()
		r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: loyalty.Money(250 * n), Currency: "EUR",
			Lines: []loyalty.Line{{SKU: "espresso", Qty: n, Amount: 250 * n}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	buy("a", 9)
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "a", RefundID: "r1", Amount: 2250}); err != nil {
		t.Fatalf("refund of the whole amount: %v", err)
	}
	r, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "a"})
	if err != nil {
		t.Errorf("full reverse after the amount was refunded: %v; want the 9 punches the refunds left taken back", err)
	} else if r.Points != 0 {
		t.Errorf("full reverse took %d points, want 0 (the refund took them)", r.Points)
	}
	if got := buy("b", 1); len(got.PunchRewards) != 0 {
		t.Errorf("one espresso after 9 bought and all returned filled the card of 10: %v", got.PunchRewards)
	}
}
