package sim

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// chain is a hub and two stores (s1, s2) running the real hub, agent and sync code with live
// sessions, on an injected clock, with one rich member per store (m-s1, m-s2) and the given
// budgets over stackable rewards.
func chain(t *testing.T, leases hub.LeaseConfig, budgets ...loyalty.Budget) *world {
	t.Helper()
	ctx := context.Background()
	w := newWorld(Config{Seed: 1, Stores: 2}, t.TempDir(), time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	t.Cleanup(w.close)
	w.leases = leases
	if err := w.openHub(ctx); err != nil {
		t.Fatal(err)
	}
	p := loyalty.DefaultProgram()
	for i := range p.Rewards {
		p.Rewards[i].Stackable = true
	}
	p.Budgets = budgets
	if _, err := w.hub.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		_, token, err := w.hub.CreateStore(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		w.storeTokens[id] = token
		s := &store{id: id, path: w.dir + "/" + id + ".db", w: w}
		if err := w.openStore(ctx, s); err != nil {
			t.Fatal(err)
		}
		w.stores = append(w.stores, s)
		m := "m-" + id
		if _, err := w.hub.CreateMember(ctx, loyalty.Member{ID: m, HomeStore: id}); err != nil {
			t.Fatal(err)
		}
		if w.tokens[m], err = w.hub.MemberToken(ctx, m); err != nil {
			t.Fatal(err)
		}
		if _, err := w.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "welcome-" + m, MemberID: m, Amount: 10_000_000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range w.stores {
		if err := w.goLive(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// redeemAt redeems reward at store s on order, for the store's member.
func (w *world) redeemAt(s *store, order, reward string, amount int64) (loyalty.Receipt, error) {
	return s.ag.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: order, QR: w.tokens["m-"+s.id], RewardID: reward,
		OrderAmount: loyalty.Money(amount)})
}

// leaseSpent returns what store s spent of its lease of budget, by its own records.
func leaseSpent(t *testing.T, s *store, budget string) int64 {
	t.Helper()
	var spent int64
	err := s.st.View(context.Background(), func(tx agent.Tx) error {
		ls, err := tx.Leases(context.Background())
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.Budget == budget {
				n, err := tx.LeaseSpent(context.Background(), l.ID)
				spent += n
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return spent
}

func budgetSpent(t *testing.T, w *world, budget string) int64 {
	t.Helper()
	bs, err := w.hub.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.ID == budget {
			return b.Spent
		}
	}
	t.Fatalf("no budget %s", budget)
	return 0
}

// TestOfflineFiveOffOnALargeOrder: under an order_value budget of 9,000, a five-off on a 2,000
// order is approved at a store cut off from the hub (a new store holds a quarter of the limit),
// and counted once it reconnects. With the old sizing, 5% of the limit, the same redemption is
// refused at the store, saying why, and nothing is spent.
func TestOfflineFiveOffOnALargeOrder(t *testing.T) {
	ctx := context.Background()
	orders := loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 9_000}
	w := chain(t, hub.DefaultLeaseConfig(), orders)
	s1 := w.stores[0]
	w.disconnect(ctx, s1)
	r, err := w.redeemAt(s1, "A-1", "five-off", 2_000)
	if err != nil || !r.Offline {
		t.Fatalf("five-off on a 2000 order offline: %+v, %v", r, err)
	}
	if err := w.goLive(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if got := budgetSpent(t, w, "orders"); got != 2_000 || len(w.res.Violations) > 0 {
		t.Fatalf("after s1 reconnected: spent %d, violations %v", got, w.res.Violations)
	}

	old := chain(t, hub.LeaseConfig{TTL: 15 * time.Minute, Margin: time.Minute, Min: 1, Share: 0.05}, orders)
	s1 = old.stores[0]
	old.disconnect(ctx, s1)
	_, err = old.redeemAt(s1, "A-1", "five-off", 2_000)
	if loyalty.ErrorCode(err) != loyalty.EBUDGET || !strings.Contains(err.Error(), "this needs 2000") {
		t.Fatalf("with 5%% leases: %v, want EBUDGET saying the order needs 2000", err)
	}
	if spent := leaseSpent(t, s1, "orders"); spent != 0 {
		t.Fatalf("a refused redemption spent %d", spent)
	}
}

// TestTwoRewardsOneOrderCountOnceAtTheStore: two rewards on one order, redeemed at a store cut
// off from the hub, spend the order's value once of the store's order_value lease, and the hub
// counts it once when they arrive; a refund of the order gives it back once.
func TestTwoRewardsOneOrderCountOnceAtTheStore(t *testing.T) {
	ctx := context.Background()
	w := chain(t, hub.DefaultLeaseConfig(), loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 100_000})
	s1 := w.stores[0]
	w.disconnect(ctx, s1)
	for _, reward := range []string{"coffee", "five-off"} {
		if _, err := w.redeemAt(s1, "A-1", reward, 2_000); err != nil {
			t.Fatalf("%s on order A-1: %v", reward, err)
		}
	}
	if spent := leaseSpent(t, s1, "orders"); spent != 2_000 {
		t.Fatalf("the store spent %d of its lease for one order of 2000", spent)
	}
	if err := w.goLive(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if got := budgetSpent(t, w, "orders"); got != 2_000 || len(w.res.Violations) > 0 {
		t.Fatalf("the hub counted %d for one order of 2000 (violations %v)", got, w.res.Violations)
	}
	if _, err := s1.ag.Reverse(ctx, loyalty.ReverseRequest{OrderID: "A-1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.heartbeat(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if got, spent := budgetSpent(t, w, "orders"), leaseSpent(t, s1, "orders"); got != 0 || spent != 0 {
		t.Fatalf("after the refund: the hub counts %d, the store %d", got, spent)
	}
}

// TestReclaimedStoreNeverOverspends: a connected store idle for a whole demand window holds far
// more than it needs, and its flushed pull tells it a lower grant. Before that answer reaches it,
// the store redeems more than the lower grant (its cashiers do not wait for the hub): each of
// those redemptions is applied at the hub, none is rejected, the quota comes back only when a
// later pull of the session shows the store heard, and the budget holds at every step.
func TestReclaimedStoreNeverOverspends(t *testing.T) {
	ctx := context.Background()
	cfg := hub.DefaultLeaseConfig()
	cfg.DemandWindow = time.Hour
	w := chain(t, cfg, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40})
	s1 := w.stores[0]
	status := func() hub.BudgetStatus {
		bs, err := w.hub.Budgets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.checkBudgets(ctx); err != nil {
			t.Fatal(err)
		}
		return bs[0]
	}
	if got := status().Outstanding; got != 20 { // two new stores: a quarter of 40 each
		t.Fatalf("leased at the start: %d", got)
	}
	w.now = w.now.Add(2 * time.Hour) // a whole window without a redemption
	l := s1.live
	if err := l.cs.Kick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.cs.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range l.toHub.Take() {
		if err := l.ss.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	answer := l.toAgent.Take() // the hub's answer, telling s1 a grant of 1, on its way
	if s := status(); s.Reclaiming != 9 || s.Outstanding != 20 {
		t.Fatalf("told, not heard yet: %+v", s)
	}
	for i := range 4 { // meanwhile s1 spends by the grant it holds
		if _, err := w.redeemAt(s1, fmt.Sprint("A-", i), "coffee", 0); err != nil {
			t.Fatalf("coffee %d before s1 heard: %v", i, err)
		}
	}
	for _, b := range answer {
		if err := l.cs.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.pump(ctx, s1); err != nil {
		t.Fatal(err)
	}
	// s1 has heard and spent 4 > 1: it asks the hub, whose next flushed pull of the session
	// confirms the reclaim, keeping what s1 spent; then it is sized by the demand it just showed.
	if _, err := w.redeemAt(s1, "A-4", "coffee", 0); err != nil && loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatal(err)
	}
	if err := w.heartbeat(ctx, s1); err != nil {
		t.Fatal(err)
	}
	s := status()
	if s.Reclaiming != 0 || s.Spent+s.Outstanding > s.Limit {
		t.Fatalf("after s1 heard: %+v", s)
	}
	if len(w.res.Violations) > 0 {
		t.Fatalf("violations (a rejected redemption, a budget over its limit): %v", w.res.Violations)
	}
	if spent := leaseSpent(t, s1, "coffees"); spent != s.Spent {
		t.Fatalf("s1 counts %d spent, the hub %d", spent, s.Spent)
	}
}
