package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// The store's own period counts (offline_max per day, earn caps) count what falls in the period
// containing the time of the sale being made, [start, end), as the hub does: after the device's
// clock, a day ahead, is set right, what it recorded "tomorrow" does not count against today.
func TestPeriods_StoreCountsOnlyItsPeriod(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 10, 72*time.Hour, func(p *loyalty.Program) {
		p.Rewards[1].Offline, p.Rewards[1].OfflineMax = loyalty.OfflineLimit, 1 // five-off
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
		p.OfflineValidity = loyalty.Duration(72 * time.Hour) // the day ahead is not a day without the hub here
	})
	today := *clock
	*clock = today.Add(24 * time.Hour) // the device's clock is a day ahead
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "f1", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Fatal(err)
	}
	if r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil || r.Points != 100 {
		t.Fatalf("earn a day ahead: %+v, %v", r, err)
	}
	*clock = today // set right
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "f2", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Errorf("today's first five-off offline was refused because of tomorrow's: %v", err)
	}
	if r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e2", MemberID: "m1", Amount: 7000, Currency: "EUR"}); err != nil || r.Points != 70 {
		t.Errorf("today's first earn: %+v, %v; want 70 points (tomorrow's 100 do not count today)", r, err)
	}
	// Within today's period the counts hold as before.
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "f3", MemberID: "m1", RewardID: "five-off"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Errorf("today's second five-off offline: %v, want EBUDGET", err)
	}
	if r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e3", MemberID: "m1", Amount: 7000, Currency: "EUR"}); err != nil || r.Points != 30 {
		t.Errorf("today's second earn: %+v, %v; want 30 points", r, err)
	}
}
