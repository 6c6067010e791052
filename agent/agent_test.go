package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// fakeSync is the unit seam for the sync client: offline unless told otherwise.
type fakeSync struct {
	mu     gosync.Mutex
	online bool
	kicks  int
	status lsync.Status // sessions and clock offset, when a test sets them
}

func (f *fakeSync) Kick() { f.mu.Lock(); f.kicks++; f.mu.Unlock() }
func (f *fakeSync) Refresh(ctx context.Context) error {
	return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}
func (f *fakeSync) Subscribe(ctx context.Context, m string) (*loyalty.Member, error) {
	return nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}
func (f *fakeSync) Status() lsync.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.Online = f.online
	return st
}

type replicaAgent struct {
	*agent.Agent
	store *agentsqlite.Store
	path  string
	sync  *fakeSync
	key   qr.PrivateKey
}

// newTestAgent opens an agent on a temporary replica that has synced the default program, one
// signing key and member m1 with 120 points.
func newTestAgent(tb testing.TB) *replicaAgent {
	tb.Helper()
	ctx := context.Background()
	path := filepath.Join(tb.TempDir(), "agent.db")
	s, err := agentsqlite.Open(ctx, path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	k, err := qr.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	p := loyalty.DefaultProgram()
	if err := s.ApplyChanges(ctx, &lsync.Changes{Cursor: 10, Program: &p, Keys: []qr.PublicKey{k.Public()},
		Members: []loyalty.Member{{ID: "m1", Name: "Ann", Balance: 120, Version: 5}}}); err != nil {
		tb.Fatal(err)
	}
	fs := &fakeSync{}
	a := agent.New("s1", s, fs)
	a.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a.Now = func() time.Time { return now }
	return &replicaAgent{Agent: a, store: s, path: path, sync: fs, key: k}
}

func (ta *replicaAgent) token(tb testing.TB, member string) string {
	tb.Helper()
	t, err := qr.Sign(ta.key, qr.Claims{Type: qr.TypeMember, Member: member})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func (ta *replicaAgent) scan(tb testing.TB, member string) agent.ScanResult {
	tb.Helper()
	r, err := ta.Scan(context.Background(), agent.ScanRequest{QR: ta.token(tb, member)})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestEarn_OfflineBalanceIsSyncedPlusPending(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: ta.token(t, "m1"), Amount: 1299, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Points != 12 || r.Balance != 132 || !r.Offline || len(r.Deltas) != 1 {
		t.Errorf("receipt %+v, want 12 points, balance 132, offline", r)
	}
	s := ta.scan(t, "m1")
	if s.Balance != 132 || s.Pending != 12 || !s.Known || !s.Offline {
		t.Errorf("scan %+v", s)
	}
	if ta.sync.kicks != 1 {
		t.Errorf("sync kicked %d times, want 1", ta.sync.kicks)
	}
}

func TestEarn_RetryReturnsFirstAnswer(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	req := loyalty.EarnRequest{OrderID: "o1", QR: ta.token(t, "m1"), Amount: 1000, Currency: "EUR"}
	first, err := ta.Earn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ta.sync.online = true // the answer must not change with the connection
	req.QR = ta.token(t, "m1")
	again, err := ta.Earn(ctx, req) // a refreshed code for the same member is the same request
	b1, _ := json.Marshal(first)
	b2, _ := json.Marshal(again)
	if err != nil || string(b1) != string(b2) {
		t.Fatalf("retry: %s, %v; want %s", b2, err, b1)
	}
	req.Amount = 2000
	if _, err := ta.Earn(ctx, req); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("same order, other amount: %v, want ECONFLICT", err)
	}
	if s := ta.scan(t, "m1"); s.Balance != 130 {
		t.Errorf("balance %d, want 130: the retry and the conflict changed nothing", s.Balance)
	}
}

func TestRedeem_NeverBelowZeroOffline(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	tok := ta.token(t, "m1")
	// 120 points: two coffees (50 each) pass, the third would take the balance to -30.
	for i, want := range []string{"", "", loyalty.EINSUFFICIENT} {
		_, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r" + string(rune('1'+i)), QR: tok, RewardID: "coffee"})
		if got := loyalty.ErrorCode(err); got != want {
			t.Fatalf("redemption %d: %q, want %q (%v)", i+1, got, want, err)
		}
	}
	if s := ta.scan(t, "m1"); s.Balance != 20 {
		t.Errorf("balance %d, want 20", s.Balance)
	}
	// A member this store has never seen can earn with a signed QR but cannot redeem points
	// the store cannot see.
	stranger := ta.token(t, "m9")
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r9", QR: stranger, RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.EINSUFFICIENT {
		t.Errorf("stranger redeem: %v, want EINSUFFICIENT", err)
	}
	r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e9", QR: stranger, Amount: 5000, Currency: "EUR"})
	if err != nil || r.Balance != 50 {
		t.Errorf("stranger earn: %+v, %v", r, err)
	}
	if s := ta.scan(t, "m9"); s.Known || s.Balance != 50 || len(s.Affordable) != 1 {
		t.Errorf("stranger scan: %+v", s)
	}
}

func TestReverse(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	tok := ta.token(t, "m1")
	if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: tok, Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o1", QR: tok, RewardID: "five-off"}); err != nil {
		t.Fatal(err)
	}
	r, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1"})
	if err != nil || r.Points != 70 || len(r.Deltas) != 2 || r.Balance != 120 {
		t.Fatalf("reverse: %+v, %v; want +70 over 2 deltas back to 120", r, err)
	}
	again, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1"})
	if err != nil || again.Deltas[0] != r.Deltas[0] {
		t.Fatalf("retried reverse: %+v, %v; want the first answer", again, err)
	}
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "nope"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("unknown order: %v", err)
	}
	if s := ta.scan(t, "m1"); s.Balance != 120 {
		t.Errorf("balance %d, want 120", s.Balance)
	}
}

// TestAck_MovesDeltasFromPendingToSynced: after an ack a delta is no longer pending, but it
// counts on top of the synced copy of the member until a copy that includes it arrives (the
// ack's version of the member, or a newer one); it is never counted twice, and an older copy
// never takes the member back in time.
func TestAck_MovesDeltasFromPendingToSynced(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	r1, _ := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	r2, _ := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o2", MemberID: "m1", Amount: 2000, Currency: "EUR"})
	out, err := ta.store.Pending(ctx, 0, 10)
	if err != nil || len(out) != 2 || out[0].Delta.ID != r1.Deltas[0] || out[1].Seq <= out[0].Seq {
		t.Fatalf("outbox: %+v, %v", out, err)
	}
	// The hub applied o1 and rejected o2; another store's sale also moved the balance (+5).
	ack := &lsync.Ack{
		Results:  []lsync.Result{{DeltaID: r1.Deltas[0], Status: lsync.StatusApplied, Seq: 7}, {DeltaID: r2.Deltas[0], Status: lsync.StatusRejected, Code: "EINVALID", Message: "test"}},
		Balances: []lsync.Balance{{Member: "m1", Balance: 135, Version: 9}},
	}
	if err := ta.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	// 120 synced and o1's 10, confirmed; the other store's 5 come with the member's copy.
	if s := ta.scan(t, "m1"); s.Balance != 130 || s.Pending != 0 || s.Member.Version != 5 {
		t.Errorf("after ack: balance %d pending %d (copy version %d), want 130, 0 (5)", s.Balance, s.Pending, s.Member.Version)
	}
	st, _ := ta.Status(ctx)
	if st.Outbox != 0 || st.Rejected != 1 {
		t.Errorf("status: %+v", st.Stats)
	}
	rej, _ := ta.Rejected(ctx, 10)
	if len(rej) != 1 || rej[0].Delta.ID != r2.Deltas[0] || rej[0].Code != "EINVALID" {
		t.Errorf("rejected: %+v", rej)
	}
	// A copy from before the hub applied o1 (version 8 < 9) does not include it: o1 still counts.
	ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 11, Members: []loyalty.Member{{ID: "m1", Name: "Ann", Balance: 123, Version: 8}}})
	if s := ta.scan(t, "m1"); s.Balance != 133 {
		t.Errorf("after a copy older than the ack: balance %d, want 123 + 10", s.Balance)
	}
	// The copy of the ack's version includes o1: it counts once.
	ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 12, Members: []loyalty.Member{{ID: "m1", Name: "Ann", Balance: 135, Version: 9}}})
	if s := ta.scan(t, "m1"); s.Balance != 135 || s.Pending != 0 {
		t.Errorf("after the ack's copy: balance %d pending %d, want 135 and 0", s.Balance, s.Pending)
	}
	// An older copy (a late page) never takes the member back in time.
	ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 13, Members: []loyalty.Member{{ID: "m1", Balance: 1, Version: 8}}})
	if s := ta.scan(t, "m1"); s.Balance != 135 || s.Member.Name != "Ann" {
		t.Errorf("after a stale page: %+v", s)
	}
	// A repeated ack changes nothing.
	if err := ta.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	if s := ta.scan(t, "m1"); s.Balance != 135 {
		t.Errorf("after a repeated ack: %d", s.Balance)
	}
}

// TestOutboxSurvivesReopen: what the cashier saw approved is on disk.
func TestOutboxSurvivesReopen(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	ta.store.Close()
	s, err := agentsqlite.Open(ctx, ta.path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Pending(ctx, 0, 10)
	if err != nil || len(out) != 1 || out[0].Delta.ID != r.Deltas[0] || out[0].Delta.Points != 10 {
		t.Fatalf("after reopen: %+v, %v", out, err)
	}
	if c, _ := s.Cursor(ctx); c != 10 {
		t.Errorf("cursor %d, want 10", c)
	}
}

func TestNeverSynced(t *testing.T) {
	ctx := context.Background()
	s, err := agentsqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := agent.New("s1", s, &fakeSync{})
	_, err = a.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: "LES1.k.x.y", Amount: 100, Currency: "EUR"})
	if loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE {
		t.Errorf("earn before the first sync: %v, want EUNAVAILABLE", err)
	}
	_, err = a.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 100, Currency: "EUR"})
	if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("earn by id before the first sync: %v, want ENOTFOUND", err)
	}
}

// offlineBudget gives the replica a program with a coffee budget and a lease of granted
// coffees valid for ttl from now, and fake clocks for the agent and the store.
func offlineBudget(t *testing.T, ta *replicaAgent, granted int64, ttl time.Duration, edit func(*loyalty.Program)) *time.Time {
	t.Helper()
	clock := now
	ta.Now = func() time.Time { return clock }
	ta.store.Now = func() time.Time { return clock }
	p := loyalty.DefaultProgram()
	p.Version = 2
	p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 100}}
	if edit != nil {
		edit(&p)
	}
	err := ta.store.ApplyChanges(context.Background(), &lsync.Changes{Cursor: 11, Program: &p,
		Leases:  []lsync.Lease{{ID: "L1", Budget: "coffees", Granted: granted, State: "active", TTLMillis: ttl.Milliseconds()}},
		Members: []loyalty.Member{{ID: "m1", Name: "Ann", Balance: 10000, Version: 6}}})
	if err != nil {
		t.Fatal(err)
	}
	return &clock
}

func TestOfflineLeaseBoundary(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 3, 10*time.Minute, nil)
	tok := ta.token(t, "m1")
	for i := range 4 {
		_, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprint("c", i), QR: tok, RewardID: "coffee"})
		if i < 3 && err != nil {
			t.Fatalf("coffee %d of a lease of 3: %v", i+1, err)
		}
		if i == 3 && loyalty.ErrorCode(err) != loyalty.EBUDGET {
			t.Fatalf("coffee 4 of a lease of 3: %v, want EBUDGET", err)
		}
	}
	// A refund gives a unit back to the lease.
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "c0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "c9", QR: tok, RewardID: "coffee"}); err != nil {
		t.Fatalf("after a refund: %v", err)
	}
	// Other rewards are not in the budget.
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "f1", QR: tok, RewardID: "five-off"}); err != nil {
		t.Errorf("a reward outside the budget: %v", err)
	}
	// Each redemption names the lease it spent.
	out, _ := ta.store.Pending(ctx, 0, 100)
	for _, o := range out {
		if o.Delta.Reward == "coffee" && o.Delta.Leases["coffees"] != "L1" {
			t.Errorf("delta %s spent no lease: %+v", o.Delta.ID, o.Delta.Leases)
		}
	}
	_ = clock
}

func TestOfflineLeaseExpires(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 10, 10*time.Minute, nil)
	tok := ta.token(t, "m1")
	*clock = clock.Add(10*time.Minute - time.Millisecond)
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "a", QR: tok, RewardID: "coffee"}); err != nil {
		t.Fatalf("last instant of the lease: %v", err)
	}
	*clock = clock.Add(time.Millisecond)
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "b", QR: tok, RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("at the lease's TTL: %v, want EBUDGET", err)
	}
}

func TestOfflinePolicies(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 10, time.Hour, func(p *loyalty.Program) {
		p.Rewards[1].Offline, p.Rewards[1].OfflineMax = loyalty.OfflineLimit, 2 // five-off
		p.Rewards[2].Offline = loyalty.OfflineDeny                              // tote
	})
	tok := ta.token(t, "m1")
	redeem := func(order, reward string) error {
		_, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: order, QR: tok, RewardID: reward})
		return err
	}
	if err := redeem("t1", "tote"); loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE {
		t.Errorf("online-only reward offline: %v, want EUNAVAILABLE", err)
	}
	if err := redeem("f1", "five-off"); err != nil {
		t.Fatal(err)
	}
	if err := redeem("f2", "five-off"); err != nil {
		t.Fatalf("2nd of 2 offline today: %v", err)
	}
	if err := redeem("f3", "five-off"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("3rd of 2 offline today: %v, want EBUDGET", err)
	}
	*clock = loyalty.PeriodStart(loyalty.PeriodDay, *clock).Add(24 * time.Hour) // midnight UTC
	if err := redeem("f4", "five-off"); err != nil {
		t.Errorf("the next day: %v", err)
	}
	ta.sync.online = true
	if err := redeem("t2", "tote"); err != nil {
		t.Errorf("online-only reward online: %v", err)
	}
}

func TestKillSwitchAtTheStore(t *testing.T) {
	ta := newTestAgent(t)
	offlineBudget(t, ta, 10, time.Hour, func(p *loyalty.Program) { p.Rewards[0].Disabled = true })
	_, err := ta.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: "k", QR: ta.token(t, "m1"), RewardID: "coffee"})
	if loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("switched-off reward: %v, want EBUDGET", err)
	}
}

func TestEarnCapAtTheStore(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	offlineBudget(t, ta, 10, time.Hour, func(p *loyalty.Program) {
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
	})
	for _, c := range []struct {
		order string
		want  int64
	}{{"a", 70}, {"b", 30}, {"c", 0}} {
		r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: c.order, MemberID: "m1", Amount: 7000, Currency: "EUR"})
		if err != nil || r.Points != c.want {
			t.Errorf("earn %s: %+v, %v; want %d points", c.order, r, err, c.want)
		}
	}
	// A refund of an earn makes room again.
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "a"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "d", MemberID: "m1", Amount: 5000, Currency: "EUR"}); r.Points != 50 {
		t.Errorf("after refunding 70: %d points, want 50", r.Points)
	}
}

// TestStacking: two stackable rewards combine on one order; a third, not stackable, is refused
// there; each reward's retry is its own first answer.
func TestStacking(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	offlineBudget(t, ta, 10, time.Hour, func(p *loyalty.Program) {
		p.Budgets = nil
		p.Rewards[0].Stackable, p.Rewards[1].Stackable = true, true
	})
	redeem := func(reward string) (loyalty.Receipt, error) {
		return ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o1", MemberID: "m1", RewardID: reward})
	}
	first, err := redeem("coffee")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redeem("five-off"); err != nil {
		t.Fatalf("a second stackable reward: %v", err)
	}
	if _, err := redeem("tote"); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Fatalf("a non-stackable reward on the same order: %v, want EINVALID", err)
	}
	if again, err := redeem("coffee"); err != nil || again.Deltas[0] != first.Deltas[0] {
		t.Errorf("retry of the first reward: %+v, %v", again, err)
	}
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o2", MemberID: "m1", RewardID: "tote"}); err != nil {
		t.Errorf("the tote on its own order: %v", err)
	}
}

// espressoCard returns an offline agent whose program has an espresso punch card of size
// espressos, and buy, which sells member m1 n espressos at 2.50 on an order.
func espressoCard(t *testing.T, size int64) (*replicaAgent, func(order string, n int64) loyalty.Receipt) {
	ta := newTestAgent(t)
	offlineBudget(t, ta, 10, time.Hour, func(p *loyalty.Program) {
		p.Budgets = nil
		p.PunchCards = []loyalty.PunchCard{{ID: "card", SKU: "espresso", Buy: size, Reward: "coffee"}}
	})
	return ta, func(order string, n int64) loyalty.Receipt {
		t.Helper()
		r, err := ta.Earn(context.Background(), loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: loyalty.Money(250 * n), Currency: "EUR",
			Lines: []loyalty.Line{{SKU: "espresso", Qty: n, Amount: 250 * n}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

// TestRefundTakesPunchesBack: a refunded order's punch card units no longer count.
func TestRefundTakesPunchesBack(t *testing.T) {
	ta, buy := espressoCard(t, 5)
	ctx := context.Background()
	buy("a", 3)
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "a"}); err != nil {
		t.Fatal(err)
	}
	if r := buy("b", 4); len(r.PunchRewards) != 0 {
		t.Errorf("3 refunded + 4 bought filled a card of 5: %+v", r.PunchRewards)
	}
	if r := buy("c", 1); len(r.PunchRewards) != 1 {
		t.Errorf("the 5th unit kept: %+v", r.PunchRewards)
	}
}

// A sale refunded in full by amount (partial refunds whose amounts add up to the sale, which is
// all the till page's refund form sends) keeps its punch-card units: a refund by amount takes
// back no punches. A full reverse afterwards takes back what they left (docs/API.md), so a member
// who bought 9 espressos and returned them all does not fill the card of 10 with the next one.
func TestReverse_AfterAmountRefundsTakesThePunchesLeft(t *testing.T) {
	ta, buy := espressoCard(t, 10)
	ctx := context.Background()
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

// TestClockOffsetSurvivesARestart: an agent restarted while offline dates its deltas with the
// clock offset it last measured, not with none: the hub refuses dates far from its own clock.
func TestClockOffsetSurvivesARestart(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	hour := time.Hour.Milliseconds()
	ta.sync.status = lsync.Status{Sessions: 1, ClockOffsetMS: -hour} // this PC runs an hour fast
	r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	ta.sync.status = lsync.Status{} // restarted, not connected since
	r2, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o2", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ta.store.Pending(ctx, 0, 10)
	if err != nil || len(out) != 2 {
		t.Fatalf("pending %d, %v", len(out), err)
	}
	for i, id := range []string{r.Deltas[0], r2.Deltas[0]} {
		if out[i].Delta.ID != id || out[i].Delta.ClockOffsetMS != -hour {
			t.Errorf("delta %d: offset %d ms, want %d", i, out[i].Delta.ClockOffsetMS, -hour)
		}
	}
}

// TestEpoch_ResendByTheHubsClock: a sale made while the till's clock ran two hours behind the
// hub's, and acknowledged; the clock is set right; then the hub is restored to a backup from
// just before the sale. The sale goes back in the outbox: its time on the hub's clock (its
// occurred_at and the clock offset it carries) is after the hub's resend time, though its time
// on the till's clock, read with today's offset, is not. Before, it was left out, and the
// restored hub never had it.
func TestEpoch_ResendByTheHubsClock(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := now
	ta.Now = func() time.Time { return clock }
	if err := ta.store.Epoch(ctx, 111, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	ta.sync.status = lsync.Status{Sessions: 1, ClockOffset: 2 * time.Hour, ClockOffsetMS: (2 * time.Hour).Milliseconds()}
	r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	sale := clock.Add(2 * time.Hour) // on the hub's clock
	if err := ta.store.ApplyAck(ctx, &lsync.Ack{Results: []lsync.Result{{DeltaID: r.Deltas[0], Status: lsync.StatusApplied, Seq: 1}},
		Balances: []lsync.Balance{{Member: "m1", Balance: 130, Version: 6}}}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(3 * time.Hour) // set right: no offset from now on
	since := sale.Add(-70 * time.Minute)
	if err := ta.store.Epoch(ctx, 222, since, 0); err != nil {
		t.Fatal(err)
	}
	out, err := ta.store.Pending(ctx, 0, 10)
	if err != nil || len(out) != 1 || out[0].Delta.ID != r.Deltas[0] {
		t.Fatalf("outbox after the restore: %+v, %v; want the sale made at %s on the hub's clock, after %s", out, err, sale, since)
	}
}

// TestEpoch_RestoredHubGetsWhatItLost: a hub restored from a backup names a new epoch. The
// replica then puts back in the outbox what it made since the time the hub names (even what was
// acknowledged), without changing what the cashier sees, starts its change feed over, and drops
// the old epoch's leases. The same epoch again changes nothing.
func TestEpoch_RestoredHubGetsWhatItLost(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 3, 10*time.Minute, nil)
	if err := ta.store.Epoch(ctx, 111, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	earn := func(order string) loyalty.Receipt {
		*clock = clock.Add(time.Minute)
		r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: 1000, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r1 := earn("o1")
	since := clock.Add(30 * time.Second)
	r2 := earn("o2")
	balance := ta.scan(t, "m1").Balance
	err := ta.store.ApplyAck(ctx, &lsync.Ack{
		Results:  []lsync.Result{{DeltaID: r1.Deltas[0], Status: lsync.StatusApplied, Seq: 1}, {DeltaID: r2.Deltas[0], Status: lsync.StatusApplied, Seq: 2}},
		Balances: []lsync.Balance{{Member: "m1", Balance: balance, Version: 9}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.store.Epoch(ctx, 111, since, 0); err != nil {
		t.Fatal(err)
	}
	if n, _ := ta.store.PendingCount(ctx); n != 0 {
		t.Fatalf("the same epoch again put %d deltas back in the outbox", n)
	}

	if err := ta.store.Epoch(ctx, 222, since, 0); err != nil {
		t.Fatal(err)
	}
	out, err := ta.store.Pending(ctx, 0, 10)
	if err != nil || len(out) != 1 || out[0].Delta.ID != r2.Deltas[0] {
		t.Fatalf("outbox after a new epoch: %+v, %v; want the delta made since the hub's time (o2) alone", out, err)
	}
	if s := ta.scan(t, "m1"); s.Balance != balance || s.Pending != r2.Points {
		t.Errorf("after a new epoch the cashier sees balance %d (pending %d), want %d (pending %d)", s.Balance, s.Pending, balance, r2.Points)
	}
	if c, _ := ta.store.Cursor(ctx); c != 0 {
		t.Errorf("cursor %d after a new epoch, want 0 (the change feed starts over)", c)
	}
	st, err := ta.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Leases) != 0 {
		t.Errorf("leases of the old epoch kept: %+v", st.Leases)
	}
	// The restored hub's versions start over: its member and program are taken though older.
	old := loyalty.DefaultProgram()
	old.Version = 1
	if err := ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 3, Program: &old, Members: []loyalty.Member{{ID: "m1", Name: "Ann", Balance: 77, Version: 2}}}); err != nil {
		t.Fatal(err)
	}
	if s := ta.scan(t, "m1"); s.Balance != 77+r2.Points {
		t.Errorf("after the restored hub's first page: balance %d, want its 77 plus the pending %d", s.Balance, r2.Points)
	}
	if st, _ := ta.Status(ctx); st.ProgramVersion != 1 {
		t.Errorf("program version %d after the restored hub's first page, want its 1", st.ProgramVersion)
	}
	// Once the hub acknowledges it again, nothing more goes back on the next session.
	if err := ta.store.ApplyAck(ctx, &lsync.Ack{Results: []lsync.Result{{DeltaID: r2.Deltas[0], Status: lsync.StatusApplied, Seq: 5}}}); err != nil {
		t.Fatal(err)
	}
	if err := ta.store.Epoch(ctx, 222, since, 0); err != nil {
		t.Fatal(err)
	}
	if n, _ := ta.store.PendingCount(ctx); n != 0 {
		t.Errorf("%d deltas back in the outbox at the next session of the same epoch", n)
	}
}

// A change made from a scan carries the scanned code to the hub, the proof that the member was
// here (loyalty.Delta.Presence), whether the replica holds the member or not (the hub may not
// count them as the store's). A change made by member id carries none. The POS never reads the
// code back from the agent.
func TestPresence_TheScannedCodeGoesWithTheChange(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	newcomer, regular := ta.token(t, "m9"), ta.token(t, "m1")
	calls := []func() (loyalty.Receipt, error){
		func() (loyalty.Receipt, error) {
			return ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: newcomer, Amount: 20000, Currency: "EUR"})
		},
		func() (loyalty.Receipt, error) {
			return ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o2", QR: regular, Amount: 1000, Currency: "EUR"})
		},
		func() (loyalty.Receipt, error) {
			return ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o3", MemberID: "m1", Amount: 1000, Currency: "EUR"})
		},
		func() (loyalty.Receipt, error) {
			return ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o4", QR: regular, RewardID: "coffee"})
		},
	}
	want := []string{newcomer, regular, "", regular}
	var ids []string
	for i, call := range calls {
		r, err := call()
		if err != nil || len(r.Deltas) != 1 {
			t.Fatalf("call %d: %+v, %v", i, r, err)
		}
		ids = append(ids, r.Deltas[0])
	}
	out, err := ta.store.Pending(ctx, 0, 10)
	if err != nil || len(out) != len(want) {
		t.Fatalf("outbox: %+v, %v", out, err)
	}
	for i, o := range out {
		if o.Delta.ID != ids[i] || o.Delta.Presence != want[i] {
			t.Errorf("change %d carries code %q, want %q", i, o.Delta.Presence, want[i])
		}
	}
	ack := &lsync.Ack{Results: []lsync.Result{{DeltaID: ids[0], Status: lsync.StatusRejected, Code: "EINVALID", Message: "test"}}}
	if err := ta.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	if rej, err := ta.Rejected(ctx, 10); err != nil || len(rej) != 1 || rej[0].Delta.ID != ids[0] || rej[0].Delta.Presence != "" {
		t.Errorf("rejected, as the POS reads it: %+v, %v", rej, err)
	}
}

// An ack tells the balances of the members the store holds at the hub, and no others. A copy the
// replica has of a member whose applied sale the ack tells no balance of is one the hub does not
// keep current (a scope the hub lost in a restore, a race with an eviction): it is dropped rather
// than shown without the sale, and the member's next scan fetches them again.
func TestAck_WithoutTheMembersBalanceDropsTheCopy(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if s := ta.scan(t, "m1"); !s.Known || s.Balance != 130 {
		t.Fatalf("before the ack: %+v", s)
	}
	ack := &lsync.Ack{Results: []lsync.Result{{DeltaID: r.Deltas[0], Status: lsync.StatusApplied, Seq: 7}}, Balances: []lsync.Balance{}}
	if err := ta.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	if s := ta.scan(t, "m1"); s.Known || s.Pending != 0 {
		t.Errorf("after an ack without m1's balance: %+v; want no copy, nothing pending", s)
	}
	if st, err := ta.Status(ctx); err != nil || st.Outbox != 0 {
		t.Errorf("status %+v, %v: the sale left the outbox", st, err)
	}
}
