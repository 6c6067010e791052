package e2e_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
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

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fakeSync struct{ online bool }

func (f *fakeSync) Kick() {}
func (f *fakeSync) Subscribe(ctx context.Context, m string) (*loyalty.Member, error) {
	return nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}
func (f *fakeSync) Status() lsync.Status { return lsync.Status{Online: f.online} }
func (f *fakeSync) Refresh(ctx context.Context) error {
	return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}

func openHub(t *testing.T, path string) (*hub.Hub, *hubsqlite.Store) {
	t.Helper()
	s, err := hubsqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(s)
	h.KEK = seal.NewRandom()
	h.Logger = quiet
	if err := h.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h, s
}

func openAgent(t *testing.T, path string) (*agent.Agent, *agentsqlite.Store) {
	t.Helper()
	as, err := agentsqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	a := agent.New("s1", as, &fakeSync{})
	a.Logger = quiet
	return a, as
}

// pull pulls all pages from the hub into the agent, as the client would.
func pull(t *testing.T, h *hub.Hub, as *agentsqlite.Store) *lsync.Changes {
	t.Helper()
	ctx := context.Background()
	var last *lsync.Changes
	for {
		cur, err := as.Cursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cur, Limit: 500, Flushed: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := as.ApplyChanges(ctx, ch); err != nil {
			t.Fatal(err)
		}
		last = ch
		if !ch.More {
			return last
		}
	}
}

func push(t *testing.T, h *hub.Hub, as *agentsqlite.Store) *lsync.Ack {
	t.Helper()
	ctx := context.Background()
	out, err := as.Pending(ctx, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	var ds []loyalty.Delta
	for _, o := range out {
		ds = append(ds, o.Delta)
	}
	ack, err := h.Push(ctx, "s1", ds)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// Finding: the ack's balance-only row for a member new to the store carries the same version the
// change feed then delivers the full member at, so the feed's name/email/tier are discarded.
func TestFeedDetailsWinOverAckRow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h, hs := openHub(t, filepath.Join(dir, "hub.db"))
	defer hs.Close()
	if _, _, err := h.CreateStore(ctx, "s1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m1", Name: "Alice", Email: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	a, as := openAgent(t, filepath.Join(dir, "agent.db"))
	pull(t, h, as) // program and keys
	tok, err := h.MemberToken(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	// Offline first visit: earn from the signed QR alone.
	if _, err := a.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: tok, Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	ack := push(t, h, as)
	t.Logf("ack results=%+v balances=%+v", ack.Results, ack.Balances)
	if err := as.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	ch := pull(t, h, as)
	for _, m := range ch.Members {
		t.Logf("feed delivered member %s name=%q email=%q version=%d", m.ID, m.Name, m.Email, m.Version)
	}
	res, err := a.Scan(ctx, agent.ScanRequest{QR: tok})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent replica after sync: name=%q email=%q known=%v balance=%d version=%d", res.Member.Name, res.Member.Email, res.Known, res.Balance, res.Member.Version)
	if res.Member.Name != "Alice" {
		t.Errorf("got name %q in the agent's replica after a full sync, want %q", res.Member.Name, "Alice")
	}
}

// Finding: a "duplicate" ack carries no balance, so when a delta's first ack was lost, the agent
// drops it from pending without its effect in the synced balance: the balance shown goes down.
func TestDuplicateAckCarriesBalance(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h, hs := openHub(t, filepath.Join(dir, "hub.db"))
	defer hs.Close()
	h.CreateStore(ctx, "s1", "")
	h.CreateMember(ctx, loyalty.Member{ID: "m1", HomeStore: "s1"})
	a, as := openAgent(t, filepath.Join(dir, "agent.db"))
	pull(t, h, as)
	tok, _ := h.MemberToken(ctx, "m1")
	if _, err := a.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: tok, Amount: 5000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	bal := func() int64 {
		r, err := a.Scan(ctx, agent.ScanRequest{QR: tok})
		if err != nil {
			t.Fatal(err)
		}
		return r.Balance
	}
	t.Logf("before sync: agent balance %d", bal())
	_ = push(t, h, as)    // hub commits; the ack is lost with the connection
	ack := push(t, h, as) // next session: pushed again
	t.Logf("second ack: results=%+v balances=%+v", ack.Results, ack.Balances)
	if err := as.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	got := bal()
	hm, _ := h.Member(ctx, "m1", 0)
	t.Logf("after duplicate ack (before the next pull): agent balance %d, hub balance %d", got, hm.Balance)
	if got != hm.Balance {
		t.Errorf("got agent balance %d after the duplicate ack, want %d (hub)", got, hm.Balance)
	}
	pull(t, h, as)
	t.Logf("after pull: agent balance %d", bal())
}

// Finding: a store can reverse deltas of other stores and of the online channel. Reversing the
// online redeem that bought a voucher refunds the points and leaves the voucher valid.
func TestStoreCannotReverseOtherChannels(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h, hs := openHub(t, filepath.Join(dir, "hub.db"))
	defer hs.Close()
	h.CreateStore(ctx, "s1", "")
	h.CreateStore(ctx, "s2", "")
	h.CreateMember(ctx, loyalty.Member{ID: "m1", HomeStore: "s1"})
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: "m1", Amount: 30000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	vr, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "web-2", MemberID: "m1", RewardID: "tote"})
	if err != nil {
		t.Fatal(err)
	}
	paid := vr.Deltas[0]
	rev := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s2", Member: "m1", Kind: loyalty.KindReverse, Points: 250,
		Reverses: paid, OrderID: "x", RuleVersion: 1, OccurredAt: time.Now()}
	ack, err := h.Push(ctx, "s2", []loyalty.Delta{rev})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store s2 reverses the online voucher purchase %s: %+v", paid, ack.Results)
	use, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web-3", Voucher: vr.Voucher.Token})
	m, _ := h.Member(ctx, "m1", 0)
	t.Logf("voucher still usable: err=%v receipt=%+v; member balance now %d (paid 300 pts worth of sales, holds a tote)", err, use, m.Balance)
	if ack.Results[0].Status == lsync.StatusApplied && err == nil {
		t.Errorf("store s2 refunded an online voucher purchase and the voucher was still redeemed afterwards")
	}

	// Store s2 reverses store s1's earn; s1's own refund is then rejected.
	e1 := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindEarn, Points: 10, Amount: 1000,
		Currency: "EUR", OrderID: "A-1", RuleVersion: 1, OccurredAt: time.Now()}
	h.Push(ctx, "s1", []loyalty.Delta{e1})
	r2 := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s2", Member: "m1", Kind: loyalty.KindReverse, Points: -10,
		Reverses: e1.ID, OrderID: "A-1", RuleVersion: 1, OccurredAt: time.Now()}
	a2, _ := h.Push(ctx, "s2", []loyalty.Delta{r2})
	r1 := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: -10,
		Reverses: e1.ID, OrderID: "A-1", RuleVersion: 1, OccurredAt: time.Now()}
	a1, _ := h.Push(ctx, "s1", []loyalty.Delta{r1})
	t.Logf("s2 reverses s1's earn: %+v; s1's own refund of it: %+v", a2.Results, a1.Results)
}
