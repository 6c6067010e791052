package hub_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// leaseClock is a hub on an injected clock, with what a lease test needs: pulls, sessions as the
// sync server opens and closes them, the store's lease as the hub tells it, and budget status.
type leaseClock struct {
	t   *testing.T
	h   *hub.Hub
	now time.Time
}

func newLeaseClock(t *testing.T, budgets ...loyalty.Budget) *leaseClock {
	c := &leaseClock{t: t, h: openHub(t), now: t0}
	c.h.Now = func() time.Time { return c.now }
	withProgram(t, c.h, func(p *loyalty.Program) {
		for i := range p.Rewards {
			p.Rewards[i].Stackable = true
		}
		p.Budgets = budgets
	})
	fund(t, c.h, "m1", 1_000_000)
	return c
}

// connect records the start of a session of store, as the sync server does (Seen); the
// session's start tells it apart from the store's other sessions.
func (c *leaseClock) connect(store string) {
	c.t.Helper()
	if err := c.h.Seen(context.Background(), store, lsync.Health{Connected: true, At: c.now}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *leaseClock) disconnect(store string) {
	c.t.Helper()
	if err := c.h.Seen(context.Background(), store, lsync.Health{Connected: false, At: c.now}); err != nil {
		c.t.Fatal(err)
	}
}

// pull makes a flushed pull and returns the store's lease of budget as the hub tells it.
func (c *leaseClock) pull(store, budget string) lsync.Lease {
	c.t.Helper()
	ch, err := c.h.Pull(context.Background(), store, lsync.Pull{Limit: 1000, Flushed: true})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, l := range ch.Leases {
		if l.Budget == budget && l.State == hub.LeaseActive {
			return l
		}
	}
	return lsync.Lease{}
}

// spend pushes n coffees redeemed at store now, from its lease of budget.
func (c *leaseClock) spend(store, budget string, n int) {
	c.t.Helper()
	l := c.pull(store, budget)
	for range n {
		d := redeem(store, "m1", "coffee", 50)
		d.RuleVersion, d.OccurredAt, d.Leases = 2, c.now, map[string]string{budget: l.ID}
		if ack := pushOK(c.t, c.h, store, d); ack.Results[0].Status != lsync.StatusApplied {
			c.t.Fatalf("coffee at %s: %+v", store, ack.Results[0])
		}
	}
}

func (c *leaseClock) status(budget string) hub.BudgetStatus {
	c.t.Helper()
	bs, err := c.h.Budgets(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	for _, b := range bs {
		if b.ID == budget {
			return b
		}
	}
	c.t.Fatalf("no budget %s", budget)
	return hub.BudgetStatus{}
}

func (c *leaseClock) lease(store, budget string) hub.Lease {
	c.t.Helper()
	for _, l := range c.status(budget).Leases {
		if l.Store == store && l.State == hub.LeaseActive {
			return l
		}
	}
	c.t.Fatalf("%s holds no active lease of %s", store, budget)
	return hub.Lease{}
}

// TestLeaseNewStoreShare: a store the hub has not watched for a whole demand window gets
// leases.share of the limit, but never more than what is left split evenly among the stores.
func TestLeaseNewStoreShare(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 1000})
	if l := c.pull("s1", "coffees"); l.Granted != 250 { // 25% of 1000 (the even split is 500)
		t.Fatalf("s1's first lease: %d, want 250", l.Granted)
	}
	c.h.Lease.Share = 0.9
	if l := c.pull("s2", "coffees"); l.Granted != 500 { // the even split among 2 stores binds
		t.Fatalf("s2's first lease with share 0.9: %d, want 500", l.Granted)
	}
}

// TestLeaseSizedFromDemand: once the hub has watched a store for a whole demand window, its
// lease is what the store spent in its busiest expected_outage of the window, times headroom:
// here 8 busy hours of 10 coffees, so 1.5 × 80 = 120. The store had a new store's share, far
// more: the surplus is told at a flushed pull of a session the hub knows and comes back at the
// next one; at a pull outside that session it is only told again.
func TestLeaseSizedFromDemand(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 10_000,
		LeaseTTL: loyalty.Duration(48 * time.Hour)})
	c.pull("s1", "coffees")
	for hour := range 24 {
		c.now = t0.Add(time.Duration(hour) * time.Hour)
		n := 2
		if hour >= 2 && hour < 10 {
			n = 10
		}
		c.spend("s1", "coffees", n)
	}
	spent := int64(2*16 + 10*8)
	if l := c.lease("s1", "coffees"); l.Consumed != spent || l.Granted != 2500 {
		t.Fatalf("after a day: %+v, want 2500 granted (new store's share), %d spent", l, spent)
	}
	c.now = t0.Add(24*time.Hour + time.Minute) // a whole window watched
	if l := c.pull("s1", "coffees"); l.Granted != 2500 {
		t.Fatalf("without a session the hub knows, nothing is reclaimed: told %d", l.Granted)
	}
	c.connect("s1")
	if l := c.pull("s1", "coffees"); l.Granted != spent+120 {
		t.Fatalf("s1 is told %d, want what it spent (%d) + 1.5 × 80", l.Granted, spent)
	}
	s := c.status("coffees")
	if s.Reclaiming != 2500-spent-120 || s.Outstanding != 2500-spent {
		t.Fatalf("before s1 shows it heard, the whole lease stays reserved: %+v", s)
	}
	// The store reconnects: the new session's first pull does not show that it heard.
	c.disconnect("s1")
	c.now = c.now.Add(time.Second)
	c.connect("s1")
	c.pull("s1", "coffees")
	if s := c.status("coffees"); s.Reclaiming != 2500-spent-120 {
		t.Fatalf("a pull of another session released the reclaim: %+v", s)
	}
	// The next flushed pull of the session does.
	if l := c.pull("s1", "coffees"); l.Granted != spent+120 {
		t.Fatalf("after the reclaim: told %d", l.Granted)
	}
	if s := c.status("coffees"); s.Reclaiming != 0 || s.Outstanding != 120 || s.Available != 10_000-spent-120 {
		t.Fatalf("after the reclaim: %+v", s)
	}
}

// TestBudgetFiguresAreTheirReads: what a pull reads at once to size its leases
// (Tx.BudgetFigures) is what the reads it stands for return (hub.ReadBudgetFigures), on either
// backend: for a store with demand over several hours, one never watched, a window that starts
// part way through the demand, and a budget nobody spent from.
func TestBudgetFiguresAreTheirReads(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 10_000},
		loyalty.Budget{ID: "idle", Metric: loyalty.MetricRedemptions, Reward: "tote", Limit: 500})
	for hour := range 5 {
		c.now = t0.Add(time.Duration(hour)*time.Hour + time.Minute)
		c.spend("s1", "coffees", hour+1)
	}
	ctx := context.Background()
	budgets := []string{"coffees", "idle", "unknown"}
	for _, store := range []string{"s1", "s2"} {
		for _, since := range []time.Time{t0.Add(-time.Hour), t0.Add(2*time.Hour + 30*time.Minute), c.now.Add(time.Hour)} {
			var got, want map[string]hub.BudgetFigures
			err := c.h.Store.View(ctx, func(tx hub.Tx) error {
				var err error
				if got, err = tx.BudgetFigures(ctx, store, budgets, since); err != nil {
					return err
				}
				want, err = hub.ReadBudgetFigures(ctx, tx, store, budgets, since)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(budgets) {
				t.Fatalf("%s since %s: figures of %d budgets, want %d: %+v", store, since, len(got), len(budgets), got)
			}
			for _, b := range budgets {
				g, w := got[b], want[b]
				if g.Spent != w.Spent || g.Outstanding != w.Outstanding || g.Largest != w.Largest || !g.Watched.Equal(w.Watched) ||
					len(g.Demand) != len(w.Demand) {
					t.Fatalf("%s, %s since %s: %+v, its reads say %+v", store, b, since, g, w)
				}
				for i := range g.Demand {
					if !g.Demand[i].Hour.Equal(w.Demand[i].Hour) || g.Demand[i].Amount != w.Demand[i].Amount {
						t.Fatalf("%s, %s since %s: demand %+v, its reads say %+v", store, b, since, g.Demand, w.Demand)
					}
				}
			}
		}
	}
	// The figures were not all empty: s1 spent 15 coffees over five hours, 12 of them from the
	// third hour on, and is watched; s2 never pulled.
	var f map[string]hub.BudgetFigures
	err := c.h.Store.View(ctx, func(tx hub.Tx) (err error) {
		f, err = tx.BudgetFigures(ctx, "s1", budgets, t0.Add(2*time.Hour+30*time.Minute))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var none map[string]hub.BudgetFigures
	err = c.h.Store.View(ctx, func(tx hub.Tx) (err error) {
		none, err = tx.BudgetFigures(ctx, "s1", nil, t0)
		return err
	})
	if err != nil || len(none) != 0 {
		t.Fatalf("figures of no budget: %+v, %v", none, err)
	}
	coffees := f["coffees"]
	if coffees.Spent != 15 || coffees.Outstanding <= 0 || coffees.Largest != 1 || len(coffees.Demand) != 3 ||
		coffees.Demand[0].Amount != 3 || coffees.Watched.IsZero() || f["idle"].Spent != 0 {
		t.Fatalf("s1's figures: %+v", f)
	}
}

// TestPullHeadIsItsReads: what a pull reads first, at once (Tx.PullHead), is what the reads it
// stands for return (hub.ReadPullHead), on either backend: for a store with members in its scope
// over several pages, leases, and a rule version it has not been sent; for a store without
// leases; and for an unknown store, which is ENOTFOUND.
func TestPullHeadIsItsReads(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 10_000})
	c.spend("s1", "coffees", 3)
	fund(t, c.h, "m2", 500)
	withProgram(t, c.h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 9_000}}
	})
	ctx := context.Background()
	for i, q := range []struct {
		store         string
		cursor        int64
		limit         int
		members, keys bool // the head must carry some
	}{{"s1", 0, 1000, true, true}, {"s1", 0, 1, true, true}, {"s1", 3, 2, true, true}, {"s2", 0, 1000, true, true},
		{"s1", 0, 1000, true, true}} {
		if i == 4 {
			c.pull("s1", "coffees") // sends s1 rule version 3
		}
		var got, want hub.PullHead
		err := c.h.Store.View(ctx, func(tx hub.Tx) error {
			var err error
			if got, err = tx.PullHead(ctx, q.store, q.cursor, q.limit); err != nil {
				return err
			}
			want, err = hub.ReadPullHead(ctx, tx, q.store, q.cursor, q.limit)
			return err
		})
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v: the head\n%+v\nits reads\n%+v", q, got, want)
		}
		if got.Version == 0 || got.Program.Version == 0 || got.ProgramVersion == 0 || got.Store.ID != q.store ||
			(len(got.Members) > 0) != q.members || len(got.Members) > q.limit || (len(got.Keys) > 0) != q.keys {
			t.Fatalf("%+v: a head short of what the hub holds: %+v", q, got)
		}
		if i == 4 && (len(got.Sent) != 1 || got.Sent[0].Version != 3 || !got.Unreceived) {
			t.Fatalf("after s1 was sent version 3: sent %+v, unreceived %v", got.Sent, got.Unreceived)
		}
		if q.store == "s1" && i < 4 && (len(got.Leases) == 0 || !got.Unreceived || len(got.Sent) != 0) {
			// s1 pulled (a lease, rule version 2 sent and received when it pulled again) before
			// the program changed: version 3 was not sent yet
			t.Fatalf("%+v: s1's leases and programs: %+v, unreceived %v, sent %+v", q, got.Leases, got.Unreceived, got.Sent)
		}
	}
	err := c.h.Store.View(ctx, func(tx hub.Tx) error {
		_, err := tx.PullHead(ctx, "nowhere", 0, 10)
		return err
	})
	if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Fatalf("an unknown store's head: %v, want ENOTFOUND", err)
	}
}

// TestLeaseHoldsOneOrder: a store with a whole window of history and no demand still holds one
// order's worth of an order_value budget: the largest order a reward was used on anywhere.
func TestLeaseHoldsOneOrder(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 100_000,
		LeaseTTL: loyalty.Duration(48 * time.Hour)})
	c.pull("s1", "orders")
	l2 := c.pull("s2", "orders")
	c.now = t0.Add(20 * time.Hour)
	hold(t, c.h, "s2", "m1")
	d := redeem("s2", "m1", "five-off", 100)
	d.RuleVersion, d.Amount, d.OccurredAt, d.Leases = 2, 4_000, c.now, map[string]string{"orders": l2.ID}
	mustApply(t, c.h, "s2", d)
	c.now = t0.Add(25 * time.Hour)
	c.connect("s1")
	if l := c.pull("s1", "orders"); l.Granted != 4_000 {
		t.Fatalf("an idle store is told %d, want the largest order seen (4000)", l.Granted)
	}
}

// TestOnlineCallTakesBackIdleQuota: every coffee of the budget sits in two stores' leases; an
// online redemption is refused, saying that stores online hold quota. The connected store does
// not need its quota (a whole day without a redemption), so the budget's pressure makes its
// next flushed pull tell it less, and the one after that gives the rest back; the online
// redemption then passes. The other store, whose session the hub does not know, keeps its lease.
func TestOnlineCallTakesBackIdleQuota(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 4,
		LeaseTTL: loyalty.Duration(48 * time.Hour)})
	c.h.Lease.Share = 1
	c.pull("s1", "coffees")
	c.pull("s2", "coffees")
	online := func(order string) error {
		_, err := c.h.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: order, MemberID: "m1", RewardID: "coffee"})
		return err
	}
	c.now = t0.Add(25 * time.Hour)
	c.connect("s1")
	err := online("web-1")
	if loyalty.ErrorCode(err) != loyalty.EBUDGET || !strings.Contains(err.Error(), "held by stores that are online") {
		t.Fatalf("online with every coffee leased: %v", err)
	}
	if l := c.pull("s1", "coffees"); l.Granted != 1 {
		t.Fatalf("s1, idle, is told %d, want 1 (one redemption's worth)", l.Granted)
	}
	if loyalty.ErrorCode(online("web-2")) != loyalty.EBUDGET {
		t.Fatal("the quota came back before s1 showed it heard")
	}
	c.pull("s1", "coffees")
	if err := online("web-3"); err != nil {
		t.Fatalf("online redemption with quota back from the idle store: %v", err)
	}
	if l := c.pull("s2", "coffees"); l.Granted != 2 {
		t.Fatalf("s2, not connected, was told %d; want its lease of 2 untouched", l.Granted)
	}
}

// TestOrderCountedOnce: two rewards on one order count its value once toward an order_value
// budget, from a store and online; a second, larger amount on the order counts only what it adds.
func TestOrderCountedOnce(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 100_000})
	l := c.pull("s1", "orders")
	for i, reward := range []string{"coffee", "five-off"} {
		d := redeem("s1", "m1", reward, 50+50*int64(i))
		d.RuleVersion, d.Amount, d.OrderID, d.Leases = 2, 2_000, "A-1", map[string]string{"orders": l.ID}
		mustApply(t, c.h, "s1", d)
	}
	if s := c.status("orders"); s.Spent != 2_000 || c.lease("s1", "orders").Consumed != 2_000 {
		t.Fatalf("two rewards on a 2000 order at a store: %+v", s)
	}
	for i, reward := range []string{"coffee", "five-off"} {
		if _, err := c.h.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: "W-1", MemberID: "m1", RewardID: reward,
			OrderAmount: loyalty.Money(3_000 + 500*i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.status("orders"); s.Spent != 2_000+3_500 {
		t.Fatalf("two rewards on a web order of 3000 then 3500: spent %d, want 5500", s.Spent)
	}
}

// TestOrderStillCountedAfterOneRewardReversed: a store reverses the first of two rewards on one
// order, the one that counted the order's value toward an order_value budget, and the second
// still stands. The order still counts, now by the second reward; reversing that gives it all
// back. Before, the first's reversal gave the whole order back with the second standing: a store
// reversing one reward of each such order spent the budget without counting it.
func TestOrderStillCountedAfterOneRewardReversed(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 100_000})
	l := c.pull("s1", "orders")
	var rs []loyalty.Delta
	for i, reward := range []string{"coffee", "five-off"} {
		d := redeem("s1", "m1", reward, 50+50*int64(i))
		d.RuleVersion, d.Amount, d.OrderID, d.Leases = 2, 2_000, "A-1", map[string]string{"orders": l.ID}
		mustApply(t, c.h, "s1", d)
		rs = append(rs, d)
	}
	reverse := func(r loyalty.Delta) {
		t.Helper()
		mustApply(t, c.h, "s1", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: r.Member, Kind: loyalty.KindReverse,
			OrderID: r.OrderID, Points: -r.Points, Reverses: r.ID, RuleVersion: r.RuleVersion, Reward: r.Reward, OccurredAt: t0,
			Leases: r.Leases})
	}
	counted := func(want int64, after string) {
		t.Helper()
		if s, cons := c.status("orders").Spent, c.lease("s1", "orders").Consumed; s != want || cons != want {
			t.Fatalf("after %s: budget spent %d, lease consumed %d; want %d", after, s, cons, want)
		}
	}
	counted(2_000, "two rewards on an order of 20.00")
	reverse(rs[0])
	counted(2_000, "the first reward reversed, the second standing")
	// A third reward on the order finds it counted, by the second.
	d := redeem("s1", "m1", "coffee", 50)
	d.RuleVersion, d.Amount, d.OrderID, d.Leases = 2, 2_000, "A-1", map[string]string{"orders": l.ID}
	mustApply(t, c.h, "s1", d)
	counted(2_000, "a third reward on the order")
	reverse(rs[1])
	counted(2_000, "the second reversed too, the third standing")
	reverse(d)
	counted(0, "every reward reversed")
}

// TestOrderCountsOncePerLease: a store redeems a coffee on an order from one lease, waits for it
// to end, and redeems a 5.00 off on the same order from its next lease. The order counts once per
// lease: the 5.00 off is charged the order's value on the new lease, so reversing the coffee gives
// its count back to the old one and leaves the order counted. (Counted across leases, the 5.00
// off was charged nothing, and reversing the coffee left the order uncounted.)
func TestOrderCountsOncePerLease(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 100_000,
		LeaseTTL: loyalty.Duration(time.Hour)})
	ctx := context.Background()
	l1 := c.pull("s1", "orders")
	coffee := redeem("s1", "m1", "coffee", 50)
	coffee.RuleVersion, coffee.Amount, coffee.OrderID, coffee.OccurredAt, coffee.Leases = 2, 2_000, "A-1", c.now, map[string]string{"orders": l1.ID}
	mustApply(t, c.h, "s1", coffee)
	c.now = c.now.Add(3 * time.Hour)
	if _, err := c.h.ExpireLeases(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := c.pull("s1", "orders")
	if l2.ID == l1.ID {
		t.Fatalf("the store was given lease %s again", l1.ID)
	}
	five := redeem("s1", "m1", "five-off", 100)
	five.RuleVersion, five.Amount, five.OrderID, five.OccurredAt, five.Leases = 2, 2_000, "A-1", c.now, map[string]string{"orders": l2.ID}
	mustApply(t, c.h, "s1", five)
	if s := c.status("orders").Spent; s != 4_000 {
		t.Fatalf("the order's two rewards on two leases: spent %d, want 4000 (once per lease)", s)
	}
	for _, tt := range []struct {
		r    loyalty.Delta
		want int64
	}{{coffee, 2_000}, {five, 0}} {
		mustApply(t, c.h, "s1", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse,
			OrderID: "A-1", Points: -tt.r.Points, Reverses: tt.r.ID, RuleVersion: 2, Reward: tt.r.Reward, OccurredAt: c.now})
		if s := c.status("orders").Spent; s != tt.want {
			t.Fatalf("%s reversed: spent %d, want %d", tt.r.Reward, s, tt.want)
		}
	}
}

// TestSecondRewardNeedsRoomForTheWholeOrder: the hub checks each redemption against the
// store's lease as if it were alone on its order, as the store's agent does (docs/BUDGETS.md):
// a second reward on an order whose value filled the lease is refused, though it would be
// charged nothing more. (Checking only what it adds let an order id named again spend with no
// lease at all: TestOrderIDUsedAgain.)
func TestSecondRewardNeedsRoomForTheWholeOrder(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 100_000})
	l := c.pull("s1", "orders")
	for i, reward := range []string{"coffee", "five-off"} {
		d := redeem("s1", "m1", reward, 50+50*int64(i))
		d.RuleVersion, d.Amount, d.OrderID, d.Leases = 2, l.Granted, "A-1", map[string]string{"orders": l.ID}
		if i == 0 {
			mustApply(t, c.h, "s1", d)
		} else {
			mustReject(t, c.h, "s1", d, loyalty.EBUDGET)
		}
	}
	if got := c.lease("s1", "orders").Consumed; got != l.Granted {
		t.Fatalf("lease consumed %d after one reward on an order of %d", got, l.Granted)
	}
}

// TestOrderIDUsedAgain: a hostile store names one order id for redemption after redemption.
// Only the same member's redemptions share an order's budget count; and every redemption the
// budget covers needs an active lease with room for it, even when its order had counted
// already. Before, the eleventh 5.00 off on one order id went through 13 hours after the lease
// had ended, the budget charged for the first alone.
func TestOrderIDUsedAgain(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "discounts", Metric: loyalty.MetricDiscount, Reward: "five-off", Limit: 100_000,
		LeaseTTL: loyalty.Duration(time.Hour)})
	ctx := context.Background()
	if _, err := c.h.CreateMember(ctx, loyalty.Member{ID: "m3", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	fund(t, c.h, "m3", 1_000_000)
	l := c.pull("s1", "discounts")
	five := func(member string, at time.Time, lease string) loyalty.Delta {
		d := redeem("s1", member, "five-off", 100)
		d.RuleVersion, d.Amount, d.OrderID, d.OccurredAt = 2, 500, "O-9", at
		if lease != "" {
			d.Leases = map[string]string{"discounts": lease}
		}
		return d
	}
	mustApply(t, c.h, "s1", five("m1", c.now, l.ID))
	mustApply(t, c.h, "s1", five("m3", c.now, l.ID)) // another member: another order to the budget
	if s := c.status("discounts"); s.Spent != 1_000 {
		t.Errorf("two members' 5.00 off under one order id: spent %d, want 1000", s.Spent)
	}
	mustApply(t, c.h, "s1", five("m1", c.now, l.ID)) // the same member's order: counted once
	if s := c.status("discounts"); s.Spent != 1_000 {
		t.Errorf("a second 5.00 off on m1's order of 5.00: spent %d, want 1000 still", s.Spent)
	}
	late := c.now.Add(13 * time.Hour)
	c.now = late
	mustReject(t, c.h, "s1", five("m1", late, ""), loyalty.EBUDGET)
	mustReject(t, c.h, "s1", five("m1", late, l.ID), loyalty.EBUDGET) // the lease had ended
	mustReject(t, c.h, "s1", five("m3", late, ""), loyalty.EBUDGET)
}

// TestQuietStoreKeepsOneRewardsWorth: a connected store that gives one 5.00 off a day is never
// left holding less than one reward's worth of its discount lease. Its target sinks to about one
// reward, and the refill's margin used to leave it 2.50 that no 5.00 off fits, never topped up:
// eight days of ten it refused the reward with the budget nearly all free.
func TestQuietStoreKeepsOneRewardsWorth(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "disc", Metric: loyalty.MetricDiscount, Reward: "five-off", Limit: 1_000_000})
	c.connect("s1")
	for day := range 10 {
		for h := range 24 {
			c.now = t0.Add(time.Duration(day*24+h) * time.Hour)
			l := c.pull("s1", "disc")
			if h != 12 {
				continue
			}
			if room := l.Granted - c.lease("s1", "disc").Consumed; room < 500 {
				t.Errorf("day %d: the store holds %d, less than one 5.00 off, with %d of the budget free", day, room, c.status("disc").Available)
			}
			d := redeem("s1", "m1", "five-off", 100)
			d.RuleVersion, d.OccurredAt, d.OrderID, d.Amount, d.Leases = 2, c.now, "q"+strconv.Itoa(day), 2000, map[string]string{"disc": l.ID}
			if r := pushOK(t, c.h, "s1", d).Results[0]; r.Status != lsync.StatusApplied {
				t.Errorf("day %d: the 5.00 off was %s %s (%s)", day, r.Status, r.Code, r.Message)
			}
		}
	}
}

// TestRefusalCountsQuotaHeldThroughAnotherHub: the quota that stores connected to another hub
// process hold counts as held online in a refusal's message, found in one read of their sessions
// (Tx.LiveSessions) however many leases the budget has; a store with no live session does not.
func TestRefusalCountsQuotaHeldThroughAnotherHub(t *testing.T) {
	c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 4,
		LeaseTTL: loyalty.Duration(48 * time.Hour)})
	c.h.Lease.Share = 1
	l1 := c.pull("s1", "coffees")
	c.pull("s2", "coffees")
	ctx := context.Background()
	if err := c.h.Store.Update(ctx, func(tx hub.Tx) error {
		if _, err := tx.ClaimSession(ctx, hub.Session{Store: "s1", Owner: "another-hub", Started: c.now}, time.Hour); err != nil {
			return err
		}
		live, err := tx.LiveSessions(ctx, []string{"s1", "s2", "s1", "nowhere"})
		if err != nil {
			return err
		}
		if want := map[string]bool{"s1": true, "s2": false, "nowhere": false}; !maps.Equal(live, want) {
			t.Errorf("live sessions %v, want %v", live, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err := c.h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web-1", MemberID: "m1", RewardID: "coffee"})
	if want := fmt.Sprintf("; %d of it is held by stores that are online", l1.Granted); loyalty.ErrorCode(err) != loyalty.EBUDGET || !strings.Contains(err.Error(), want) {
		t.Fatalf("online with every coffee leased: %v; want it to say %q", err, want)
	}
}

// TestLeases_SpentAMomentAfterTheGrant: a store's first spend from a lease it was just granted,
// dated 200 ms before the grant by its estimate of the hub's clock (which on a busy machine runs
// behind by up to half a round trip). The grant's only leeway was leases.margin, which a hub may
// set to 0: the honest redemption was refused EBUDGET "not active when it happened". Now the
// leeway is claims.max_future when that is longer; a spend dated before it is still refused.
func TestLeases_SpentAMomentAfterTheGrant(t *testing.T) {
	for _, margin := range []time.Duration{time.Minute /* the default */, 0} {
		t.Run(margin.String(), func(t *testing.T) {
			c := newLeaseClock(t, loyalty.Budget{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 100})
			c.h.Lease.Margin = margin
			c.now = t0.Add(time.Hour)
			l := c.pull("s1", "coffees")
			granted := c.now
			c.now = c.now.Add(50 * time.Millisecond)
			d := redeem("s1", "m1", "coffee", 50)
			d.RuleVersion, d.OccurredAt, d.Leases = 2, granted.Add(-200*time.Millisecond), map[string]string{"coffees": l.ID}
			mustApply(t, c.h, "s1", d)

			early := redeem("s1", "m1", "coffee", 50)
			early.RuleVersion, early.Leases = 2, map[string]string{"coffees": l.ID}
			early.OccurredAt = granted.Add(-max(margin, c.h.Claims.MaxFuture) - time.Second)
			mustReject(t, c.h, "s1", early, loyalty.EBUDGET)
		})
	}
}
