package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// syncPair is a real hub and an agent's replica, synced by hand the way the sync client does it
// (push the outbox, record the ack, pull the change feed), so a test decides what arrives when.
type syncPair struct {
	hub   *hub.Hub
	store *agentsqlite.Store
	agent *agent.Agent
}

func openSyncPair(t *testing.T, p loyalty.Program) *syncPair {
	t.Helper()
	ctx := context.Background()
	hs, err := hubsqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	h := hub.New(hs)
	h.KEK, h.Logger = seal.NewRandom(), biLogger
	if err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.CreateStore(ctx, "s1", "Store 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m1", Name: "Ann", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	as, err := agentsqlite.Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	a := agent.New("s1", as, &fakeSync{})
	a.Logger = biLogger
	sp := &syncPair{hub: h, store: as, agent: a}
	sp.pull(t)
	return sp
}

// push sends the whole outbox and records the hub's ack, as the sync client does.
func (sp *syncPair) push(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	out, err := sp.store.Pending(ctx, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	var ds []loyalty.Delta
	for _, o := range out {
		ds = append(ds, o.Delta)
	}
	ack, err := sp.hub.Push(ctx, "s1", ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ack.Results {
		if r.Status != lsync.StatusApplied && r.Status != lsync.StatusDuplicate {
			t.Fatalf("the hub did not apply delta %s: %+v", r.DeltaID, r)
		}
	}
	if err := sp.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
}

// fundedPair is openSyncPair on the default program with every reward stackable, extra rewards
// and budget b, with m1 given 500 points, synced.
func fundedPair(t *testing.T, b loyalty.Budget, extra ...loyalty.Reward) *syncPair {
	t.Helper()
	p := loyalty.DefaultProgram()
	p.Rewards = append(p.Rewards, extra...)
	for i := range p.Rewards {
		p.Rewards[i].Stackable = true
	}
	p.Budgets = []loyalty.Budget{b}
	sp := openSyncPair(t, p)
	if _, err := sp.agent.Earn(context.Background(), loyalty.EarnRequest{OrderID: "fund", MemberID: "m1", Amount: 50000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	sp.push(t)
	sp.pull(t)
	return sp
}

// redeemAll redeems rewards for m1 on order, of amount.
func (sp *syncPair) redeemAll(t *testing.T, order string, amount loyalty.Money, rewards ...string) {
	t.Helper()
	for _, reward := range rewards {
		if _, err := sp.agent.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: order, MemberID: "m1", RewardID: reward, OrderAmount: amount}); err != nil {
			t.Fatalf("%s on order %s: %v", reward, order, err)
		}
	}
}

// pushRejecting pushes the whole outbox with the redemptions of reward priced one point more, so
// that the hub rejects them, and records the hub's ack.
func (sp *syncPair) pushRejecting(t *testing.T, reward string) {
	t.Helper()
	ctx := context.Background()
	out, err := sp.store.Pending(ctx, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	var ds []loyalty.Delta
	for _, o := range out {
		if o.Delta.Kind == loyalty.KindRedeem && o.Delta.Reward == reward {
			o.Delta.Points-- // the hub finds another price for it: rejected
		}
		ds = append(ds, o.Delta)
	}
	ack, err := sp.hub.Push(ctx, "s1", ds)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ack.Results, func(r lsync.Result) bool { return r.Status == lsync.StatusRejected }) {
		t.Fatalf("the hub rejected nothing of %+v", ack.Results)
	}
	if err := sp.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
}

// leaseCounts returns what the store counts spent of its one lease, and what the hub counts
// consumed of it.
func (sp *syncPair) leaseCounts(t *testing.T) (spent, consumed int64) {
	t.Helper()
	ctx := context.Background()
	st, err := sp.agent.Status(ctx)
	if err != nil || len(st.Leases) != 1 {
		t.Fatalf("leases %+v, %v", st.Leases, err)
	}
	if err := sp.store.View(ctx, func(tx agent.Tx) error {
		spent, err = tx.LeaseSpent(ctx, st.Leases[0].ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	bs, err := sp.hub.Budgets(ctx)
	if err != nil || len(bs) != 1 || len(bs[0].Leases) != 1 {
		t.Fatalf("budgets %+v, %v", bs, err)
	}
	return spent, bs[0].Leases[0].Consumed
}

// pull applies the change feed until its last page.
func (sp *syncPair) pull(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for {
		cur, err := sp.store.Cursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := sp.hub.Pull(ctx, "s1", lsync.Pull{Cursor: cur, Limit: 500, Flushed: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.store.ApplyChanges(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if !ch.More {
			return
		}
	}
}

func (sp *syncPair) buyEspressos(t *testing.T, order string, n int64) loyalty.Receipt {
	t.Helper()
	r, err := sp.agent.Earn(context.Background(), loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: loyalty.Money(250 * n),
		Currency: "EUR", Lines: []loyalty.Line{{SKU: "espresso", Qty: n, Amount: 250 * n}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// view is what the agent knows of m1: the balance and punch card units a cashier's next order
// is computed with.
func (sp *syncPair) view(t *testing.T) (balance, punches int64) {
	t.Helper()
	ctx := context.Background()
	err := sp.store.View(ctx, func(tx agent.Tx) error {
		m, err := tx.Member(ctx, "m1")
		if err != nil {
			return err
		}
		pts, err := tx.PendingPoints(ctx, "m1")
		if err != nil {
			return err
		}
		ps, err := tx.PendingPunches(ctx, "m1")
		balance, punches = m.Balance+pts, m.Punches["espresso"]+ps["espresso"]
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return balance, punches
}

// TestAckedOrderCountsUntilTheMemberArrives (issue finding 1): two orders for one member close
// together. The first is pushed and acknowledged, and the second is rung up before the change
// feed brings the member's copy that includes the first. The first order still counts, in the
// punch card (the second order fills the card of 5) and in the balance, and once the copy
// arrives it counts once, not twice.
func TestAckedOrderCountsUntilTheMemberArrives(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 5, Reward: "coffee"}}
	sp := openSyncPair(t, p)
	ctx := context.Background()

	sp.buyEspressos(t, "a", 3)
	sp.push(t) // the hub applied order a; its ack arrived, the member's new copy has not
	hm, err := sp.hub.Member(ctx, "m1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if bal, punches := sp.view(t); bal != hm.Balance || punches != 3 {
		t.Errorf("after the ack, before the member's copy: balance %d, %d punches; the hub has %d and %v", bal, punches, hm.Balance, hm.Punches)
	}
	if r := sp.buyEspressos(t, "b", 2); len(r.PunchRewards) != 1 || r.PunchRewards[0].ID != "coffee" {
		t.Fatalf("3 espressos acknowledged and 2 more filled no card of 5: punch rewards %+v", r.PunchRewards)
	}

	sp.push(t)
	sp.pull(t) // the member's copy now includes both orders
	hm, err = sp.hub.Member(ctx, "m1", 0)
	if err != nil {
		t.Fatal(err)
	}
	bal, punches := sp.view(t)
	if bal != hm.Balance || punches != hm.Punches["espresso"] || punches != 5 {
		t.Errorf("after the member's copy: balance %d, %d punches; the hub has %d and %v (each order once)", bal, punches, hm.Balance, hm.Punches)
	}
	if s, err := sp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, sp.hub, "m1")}); err != nil || s.Balance != hm.Balance || s.Pending != 0 {
		t.Errorf("scan after the sync: %+v, %v; want balance %d, nothing pending", s, err, hm.Balance)
	}
}

func mustToken(t *testing.T, h *hub.Hub, member string) string {
	t.Helper()
	tok, err := h.MemberToken(context.Background(), member)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestPartialRefundsGiveLeaseRoomBack: a partial refund gives its share of what the sale spent
// back to the store's lease at the agent, as the hub does, so that both count the lease the same.
// Before, the agent gave nothing back until a full reversal: after twenty sales of 200 points
// refunded all but 1.00, it refused the next sale ("4000 of 4000"), while the hub counted 20
// points spent and the store holding the rest, and refused online earns too.
func TestPartialRefundsGiveLeaseRoomBack(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 4000}}
	sp := openSyncPair(t, p)
	ctx := context.Background()
	for i := range 40 {
		order := "o" + strconv.Itoa(i)
		if _, err := sp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: 20000, Currency: "EUR"}); err != nil {
			t.Fatalf("sale %d of 200 points, each refunded but 1.00 before the next: %v", i, err)
		}
		if _, err := sp.agent.Reverse(ctx, loyalty.ReverseRequest{OrderID: order, RefundID: "r" + order, Amount: 19900}); err != nil {
			t.Fatal(err)
		}
		sp.push(t)
		sp.pull(t)
	}
	spent, consumed := sp.leaseCounts(t)
	if spent != consumed || spent != 40 {
		t.Errorf("the store counts %d spent of its lease, the hub %d; want both 40 (1 point kept of each sale)", spent, consumed)
	}
}

// TestOrderReversalCarriesAsTheHubDoes: a coffee and a 5.00 off on one order of 20.00 count its
// value once toward an order_value budget; the order's reversal undoes the coffee first, whose
// count the 5.00 off takes over (loyalty.CarryOver), then the 5.00 off, which gives it all back.
// The store and the hub split it the same way: both count the lease back at 0, and the 5.00 off's
// use at the store carries the order's 20.00.
func TestOrderReversalCarriesAsTheHubDoes(t *testing.T) {
	sp := fundedPair(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 1_000_000})
	ctx := context.Background()
	sp.redeemAll(t, "A", 2000, "coffee", "five-off")
	if _, err := sp.agent.Reverse(ctx, loyalty.ReverseRequest{OrderID: "A"}); err != nil {
		t.Fatal(err)
	}
	var second []agent.LeaseUse
	var spent int64
	st, err := sp.agent.Status(ctx)
	if err != nil || len(st.Leases) != 1 {
		t.Fatalf("leases %+v, %v", st.Leases, err)
	}
	if err := sp.store.View(ctx, func(tx agent.Tx) error {
		ds, err := tx.OrderDeltas(ctx, "A")
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.Kind == loyalty.KindRedeem && d.Reward == "five-off" {
				if second, err = tx.LeaseUses(ctx, d.ID); err != nil {
					return err
				}
			}
		}
		spent, err = tx.LeaseSpent(ctx, st.Leases[0].ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(second) != 1 || second[0].Amount != 0 || second[0].Spared != 2000 || second[0].Carried != 2000 {
		t.Errorf("the 5.00 off's use %+v, want amount 0, spared 2000 and carried 2000 (the coffee's count)", second)
	}
	sp.push(t)
	sp.pull(t)
	bs, err := sp.hub.Budgets(ctx)
	if err != nil || len(bs) != 1 || len(bs[0].Leases) != 1 {
		t.Fatalf("budgets %+v, %v", bs, err)
	}
	if consumed := bs[0].Leases[0].Consumed; spent != 0 || consumed != 0 || bs[0].Spent != 0 {
		t.Errorf("after the order's reversal the store counts %d spent of its lease, the hub %d (budget spent %d); want 0", spent, consumed, bs[0].Spent)
	}
}

// TestRejectedRedemptionSplitsItsOrderAgain: a coffee and a 5.00 off on one order of 20.00, the
// order reversed or not, and the hub rejects one of the two redemptions (here: pushed with its points
// changed, as a hub whose tier history changed since would). The hub counted the order without
// it; the store splits the order again without it before it spends its lease again, so both count
// the lease the same. Before, the store counted -2000 spent when the coffee was rejected (2000
// more than it was granted, for offline redemptions the hub would reject) and 2000 when the 5.00
// off was; without the reversal, 0 for the 5.00 off the hub charged 2000.
func TestRejectedRedemptionSplitsItsOrderAgain(t *testing.T) {
	for _, tt := range []struct {
		rejected string
		reverse  bool
	}{{"coffee", true}, {"five-off", true}, {"coffee", false}} {
		rejected := tt.rejected
		t.Run(fmt.Sprintf("%s,reversed=%v", rejected, tt.reverse), func(t *testing.T) {
			sp := fundedPair(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 1_000_000})
			ctx := context.Background()
			sp.redeemAll(t, "A", 2000, "coffee", "five-off")
			if tt.reverse {
				if _, err := sp.agent.Reverse(ctx, loyalty.ReverseRequest{OrderID: "A"}); err != nil {
					t.Fatal(err)
				}
			}
			sp.pushRejecting(t, rejected)
			if err := sp.agent.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
			spent, consumed := sp.leaseCounts(t)
			if spent != consumed {
				t.Errorf("%s rejected: the store counts %d spent of its lease, the hub %d", rejected, spent, consumed)
			}
		})
	}
}

// TestResplitAsMadeThenPrunedOrder: the store splits an order again as its redemptions were made,
// not by the program it has by the time the hub's rejection arrives; and pruning keeps an order
// until it is split again. 6.00, 5.00 and 8.00 off on an order of 10.00 under a discount budget;
// the hub rejects the 6.00 off (it counts 5.00 and then 5.00 of the 8.00); the program then drops
// the 8.00 off before the store hears of the rejection, and the order is old enough to prune.
// Before, the store recounted with today's program (1300 against the hub's 1000), and a prune
// between the rejection and the recount kept the stale figures for good.
func TestResplitAsMadeThenPrunedOrder(t *testing.T) {
	sp := fundedPair(t, loyalty.Budget{ID: "disc", Metric: loyalty.MetricDiscount, Limit: 1_000_000},
		loyalty.Reward{ID: "six-off", Name: "6.00 off", PointsCost: 10, Kind: "amount_off", Value: 600},
		loyalty.Reward{ID: "eight-off", Name: "8.00 off", PointsCost: 10, Kind: "amount_off", Value: 800})
	ctx := context.Background()
	sp.redeemAll(t, "A", 1000, "six-off", "five-off", "eight-off")
	out, err := sp.store.Pending(ctx, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	var ds []loyalty.Delta
	for _, o := range out {
		if o.Delta.Reward == "six-off" {
			o.Delta.Points--
		}
		ds = append(ds, o.Delta)
	}
	ack, err := sp.hub.Push(ctx, "s1", ds)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := sp.hub.Program(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur.Rewards = slices.DeleteFunc(cur.Rewards, func(r loyalty.Reward) bool { return r.ID == "eight-off" })
	if _, err := sp.hub.SetProgram(ctx, cur); err != nil {
		t.Fatal(err)
	}
	sp.pull(t)
	if err := sp.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	if err := sp.store.Update(ctx, func(tx agent.Tx) error {
		r, err := tx.PruneOrders(ctx, agent.Prune{Before: time.Now().Add(24 * time.Hour)}, 0, 1000)
		if err == nil && r.Orders != 1 { // the fund order goes; A stays until it is split again
			t.Errorf("pruned %d orders, want 1 (the fund order)", r.Orders)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := sp.agent.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	spent, consumed := sp.leaseCounts(t)
	if spent != consumed || consumed != 1000 {
		t.Errorf("the store counts %d spent of its lease, the hub %d; want both 1000", spent, consumed)
	}
}

// TestResplitOfUsesWithoutTheirRule: uses recorded before they recorded their OrderRule (a
// second reward's with what its order spared it, but no rule) are counted again by the rule of
// the program the store has. Before, such a use was counted again as if alone on its order: 4000
// at the store against the hub's 2000.
func TestResplitOfUsesWithoutTheirRule(t *testing.T) {
	sp := fundedPair(t, loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 1_000_000})
	ctx := context.Background()
	sp.redeemAll(t, "A", 2000, "coffee", "five-off", "tote")
	if err := sp.store.Update(ctx, func(tx agent.Tx) error {
		ds, err := tx.OrderDeltas(ctx, "A")
		for _, d := range ds {
			us, err := tx.LeaseUses(ctx, d.ID)
			if err != nil {
				return err
			}
			for _, u := range us {
				u.Rule = loyalty.OrderAlone // as migration 0012 leaves a use made before it
				if err := tx.SetLeaseUse(ctx, d.ID, u); err != nil {
					return err
				}
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sp.pushRejecting(t, "coffee")
	if err := sp.agent.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if spent, consumed := sp.leaseCounts(t); spent != consumed || consumed != 2000 {
		t.Errorf("the store counts %d spent of its lease, the hub %d; want both 2000", spent, consumed)
	}
}
