package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// storeTokens keeps the tokens of the stores tests created (createStore), by test name and store
// id, for the sessions a test claims directly (tokenOf).
var storeTokens gosync.Map // string → string

// createStore registers store id at h and keeps its token for tb.
func createStore(tb testing.TB, h *hub.Hub, id string) {
	tb.Helper()
	_, token, err := h.CreateStore(context.Background(), id, "")
	if err != nil {
		tb.Fatal(err)
	}
	storeTokens.Store(tb.Name()+"\x00"+id, token)
}

// tokenOf returns the token of store id that tb, or the test it runs in, created; "" for none.
func tokenOf(tb testing.TB, id string) string {
	for name := tb.Name(); ; {
		if token, ok := storeTokens.Load(name + "\x00" + id); ok {
			return token.(string)
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return ""
		}
		name = name[:i]
	}
}

// openHub returns an initialised hub on a new database (SQLite, or PostgreSQL: backend_test.go),
// with stores s1 and s2 and members m1 (home s1) and m2 (home s2).
func openHub(tb testing.TB) *hub.Hub {
	tb.Helper()
	return hubOn(tb, newStore(tb))
}

// hubOn is openHub on the store s.
func hubOn(tb testing.TB, s hub.Store) *hub.Hub {
	tb.Helper()
	ctx := context.Background()
	h := hub.New(s)
	h.KEK = seal.NewRandom()
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h.Now = func() time.Time { return t0 }
	if err := h.Init(ctx); err != nil {
		tb.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		createStore(tb, h, id)
	}
	for i, home := range []string{"s1", "s2"} {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%d", i+1), HomeStore: home}); err != nil {
			tb.Fatal(err)
		}
	}
	syncStores(tb, h)
	return h
}

// syncStores pulls the change feed for s1 and s2, as their agents would: the hub accepts only
// rule versions it has sent a store.
func syncStores(tb testing.TB, h *hub.Hub) {
	tb.Helper()
	for _, id := range []string{"s1", "s2"} {
		if _, err := h.Pull(context.Background(), id, lsync.Pull{Limit: 1000}); err != nil {
			tb.Fatal(err)
		}
	}
}

func earn(store, member string, amount int64) loyalty.Delta {
	return loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: member, Kind: loyalty.KindEarn,
		Points: amount / 100, Amount: amount, Currency: "EUR", RuleVersion: 1, OccurredAt: t0}
}

func redeem(store, member, reward string, cost int64) loyalty.Delta {
	return loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: member, Kind: loyalty.KindRedeem,
		Points: -cost, Reward: reward, RuleVersion: 1, OccurredAt: t0}
}

func pushOK(t *testing.T, h *hub.Hub, store string, ds ...loyalty.Delta) *lsync.Ack {
	t.Helper()
	ack, err := h.Push(context.Background(), store, ds)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if len(ack.Results) != len(ds) {
		t.Fatalf("ack has %d results for %d deltas", len(ack.Results), len(ds))
	}
	return ack
}

// hold puts member in store's replica scope as a till's online scan does: a subscription with
// the member's signed code.
func hold(t testing.TB, h *hub.Hub, store, member string) {
	t.Helper()
	ctx := context.Background()
	code, err := h.MemberToken(ctx, member)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Subscribe(ctx, store, lsync.Subscribe{Member: member, QR: code}); err != nil {
		t.Fatalf("store %s scans member %s: %v", store, member, err)
	}
}

// scanned gives d its member's signed code, as an agent sends a change it made from a scan of a
// member it does not hold (Delta.Presence): what brings the member into the store's scope.
func scanned(t testing.TB, h *hub.Hub, d loyalty.Delta) loyalty.Delta {
	t.Helper()
	code, err := h.MemberToken(context.Background(), d.Member)
	if err != nil {
		t.Fatal(err)
	}
	d.Presence = code
	return d
}

func balance(t *testing.T, h *hub.Hub, member string) int64 {
	t.Helper()
	v, err := h.Member(context.Background(), member, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v.Balance
}

func mustCheck(t *testing.T, h *hub.Hub) {
	t.Helper()
	r, err := h.Check(context.Background())
	if err != nil || len(r.Mismatches) > 0 {
		t.Fatalf("balances vs ledger: %+v, %v", r, err)
	}
}

func TestPush_ExactlyOnce(t *testing.T) {
	h := openHub(t)
	d := earn("s1", "m1", 1299)
	ack := pushOK(t, h, "s1", d)
	if r := ack.Results[0]; r.Status != lsync.StatusApplied || r.Seq == 0 {
		t.Fatalf("first delivery: %+v", r)
	}
	if len(ack.Balances) != 1 || ack.Balances[0].Balance != 12 || ack.Balances[0].Version == 0 {
		t.Fatalf("ack balances: %+v", ack.Balances)
	}
	for range 3 {
		again := pushOK(t, h, "s1", d)
		if r := again.Results[0]; r.Status != lsync.StatusDuplicate || r.Seq != ack.Results[0].Seq {
			t.Fatalf("redelivery: %+v, want duplicate with seq %d", r, ack.Results[0].Seq)
		}
	}
	// The same delta twice in one batch is applied once too.
	d2 := earn("s1", "m1", 500)
	both := pushOK(t, h, "s1", d2, d2)
	if both.Results[0].Status != lsync.StatusApplied || both.Results[1].Status != lsync.StatusDuplicate {
		t.Fatalf("same delta twice in a batch: %+v", both.Results)
	}
	if got := balance(t, h, "m1"); got != 17 {
		t.Errorf("balance %d, want 17", got)
	}
	mustCheck(t, h)
}

// TestPush_RejectionIsFinal: a delta's outcome is decided once. A delta rejected for a reason
// that has gone since (dated ahead of the hub's clock, which has caught up), pushed again because
// its store never had the answer, gets the same rejection: it must not be applied while the
// rejection lists still show it, and an operator who settled it would pay it twice.
func TestPush_RejectionIsFinal(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	before := balance(t, h, "m1")
	d := earn("s1", "m1", 1299)
	d.OccurredAt = t0.Add(time.Hour) // ahead of the hub's clock by more than it allows
	first := pushOK(t, h, "s1", d).Results[0]
	if first.Status != lsync.StatusRejected || first.Code != loyalty.EINVALID {
		t.Fatalf("first push: %+v, want rejected with EINVALID", first)
	}
	h.Now = func() time.Time { return t0.Add(2 * time.Hour) } // the delta would pass now
	if fresh := pushOK(t, h, "s1", earn("s1", "m2", 500)).Results[0]; fresh.Status != lsync.StatusApplied {
		t.Fatalf("a new delta at the new time: %+v, want applied", fresh)
	}
	again := pushOK(t, h, "s1", d).Results[0]
	if again.Status != lsync.StatusRejected || again.Code != first.Code || again.Message != first.Message {
		t.Fatalf("pushed again: %+v, want the first answer %+v", again, first)
	}
	if got := balance(t, h, "m1"); got != before {
		t.Errorf("m1's balance %d, want %d: the rejected delta was applied", got, before)
	}
	rs, err := h.Rejections(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Delta.ID != d.ID {
		t.Errorf("rejections %+v, want the one delta once", rs)
	}
	// Another store's delta under the same id is judged on its own: the record is the first
	// store's.
	other := d
	other.Store, other.Member, other.OccurredAt = "s2", "m2", t0.Add(2*time.Hour)
	if r := pushOK(t, h, "s2", other).Results[0]; r.Status != lsync.StatusApplied {
		t.Errorf("store s2's delta under the same id: %+v, want applied", r)
	}
	mustCheck(t, h)
}

func TestPush_Rejections(t *testing.T) {
	h := openHub(t)
	applied := earn("s1", "m1", 10000)
	pushOK(t, h, "s1", applied)
	altered := applied
	altered.Points = 1000
	wrongPoints := earn("s1", "m1", 1000)
	wrongPoints.Points = 11
	unknownVersion := earn("s1", "m1", 1000)
	unknownVersion.RuleVersion = 9
	wrongCost := redeem("s1", "m1", "coffee", 10)
	adjust := earn("s1", "m1", 0)
	adjust.Kind = loyalty.KindAdjust
	reverseOther := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m2", Kind: loyalty.KindReverse,
		Points: -100, Reverses: applied.ID, OccurredAt: t0}
	reverseWrong := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse,
		Points: -5, Reverses: applied.ID, OccurredAt: t0}
	for _, tt := range []struct {
		name  string
		store string
		d     loyalty.Delta
		code  string
	}{
		{"id reused for other content", "s1", altered, loyalty.EDUPLICATE},
		{"pushed as another store", "s2", earn("s1", "m1", 100), loyalty.EUNAUTHORIZED},
		{"adjustment from a store", "s1", adjust, loyalty.EUNAUTHORIZED},
		{"unknown member", "s1", earn("s1", "nobody", 100), loyalty.ENOTFOUND},
		{"points the rule does not give", "s1", wrongPoints, loyalty.EINVALID},
		{"unknown rule version", "s1", unknownVersion, loyalty.ENOTFOUND},
		{"unknown reward", "s1", redeem("s1", "m1", "yacht", 50), loyalty.ENOTFOUND},
		{"wrong reward cost", "s1", wrongCost, loyalty.EINVALID},
		{"reverse of another member's delta", "s1", reverseOther, loyalty.EINVALID},
		{"reverse with the wrong amount", "s1", reverseWrong, loyalty.EINVALID},
		{"malformed", "s1", loyalty.Delta{ID: "x", Store: "s1", Member: "m1", Kind: "gift", OccurredAt: t0}, loyalty.EINVALID},
	} {
		ack := pushOK(t, h, tt.store, tt.d)
		if r := ack.Results[0]; r.Status != lsync.StatusRejected || r.Code != tt.code {
			t.Errorf("%s: %+v, want rejected %s", tt.name, r, tt.code)
		}
	}
	if got := balance(t, h, "m1"); got != 100 {
		t.Errorf("rejections changed the balance: %d, want 100", got)
	}
	rej, err := h.Rejections(context.Background(), 100)
	if err != nil || len(rej) != 11 {
		t.Errorf("rejections kept: %d, %v; want 11", len(rej), err)
	}
	mustCheck(t, h)
}

func TestPush_ReverseOnce(t *testing.T) {
	h := openHub(t)
	d := earn("s1", "m1", 5000)
	pushOK(t, h, "s1", d)
	rev := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: -50, Reverses: d.ID, OccurredAt: t0}
	if r := pushOK(t, h, "s1", rev).Results[0]; r.Status != lsync.StatusApplied {
		t.Fatalf("reverse: %+v", r)
	}
	rev2 := rev
	rev2.ID = loyalty.NewDeltaID()
	if r := pushOK(t, h, "s1", rev2).Results[0]; r.Code != loyalty.ECONFLICT {
		t.Fatalf("second reverse: %+v, want ECONFLICT", r)
	}
	if got := balance(t, h, "m1"); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
}

// TestPush_OfflineOverdraftIsAppliedAndFlagged: two stores, each offline, redeem against the
// same points. Both redemptions happened, so both apply; the overdraft is a recorded conflict.
func TestPush_OfflineOverdraftIsAppliedAndFlagged(t *testing.T) {
	h := openHub(t)
	pushOK(t, h, "s1", earn("s1", "m1", 6000)) // 60 points
	a := pushOK(t, h, "s1", redeem("s1", "m1", "coffee", 50))
	hold(t, h, "s2", "m1") // s2 scanned m1 before it went offline
	b := pushOK(t, h, "s2", redeem("s2", "m1", "coffee", 50))
	if a.Results[0].Status != lsync.StatusApplied || b.Results[0].Status != lsync.StatusApplied {
		t.Fatalf("offline redemptions must apply: %+v %+v", a.Results, b.Results)
	}
	if got := balance(t, h, "m1"); got != -40 {
		t.Errorf("balance %d, want -40", got)
	}
	cs, err := h.Conflicts(context.Background(), 10)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflicts: %+v, %v", cs, err)
	}
	if c := cs[0]; c.Kind != hub.ConflictOverdraft || c.Member != "m1" || c.Store != "s2" || c.Amount != 40 || !c.Flagged {
		t.Errorf("conflict: %+v", c)
	}
	mustCheck(t, h)
}

func TestOnline_Idempotency(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	req := loyalty.EarnRequest{OrderID: "web-1", MemberID: "m1", Amount: 2599, Currency: "EUR"}
	first, err := h.Earn(ctx, req)
	if err != nil || first.Points != 25 || first.Balance != 25 {
		t.Fatalf("earn: %+v, %v", first, err)
	}
	again, err := h.Earn(ctx, req)
	if a, b := mustJSON(again), mustJSON(first); err != nil || a != b {
		t.Fatalf("retry: %+v, %v; want %+v", again, err, first)
	}
	req.Amount = 100
	if _, err := h.Earn(ctx, req); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("same order, other body: %v, want ECONFLICT", err)
	}
	// A refusal is not remembered: the same call succeeds once the member can afford it.
	r := loyalty.RedeemRequest{OrderID: "web-2", MemberID: "m1", RewardID: "coffee"}
	if _, err := h.Redeem(ctx, r); loyalty.ErrorCode(err) != loyalty.EINSUFFICIENT {
		t.Fatalf("redeem with 25 points: %v, want EINSUFFICIENT", err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-3", MemberID: "m1", Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if rc, err := h.Redeem(ctx, r); err != nil || rc.Balance != 5 {
		t.Fatalf("redeem with 55 points: %+v, %v", rc, err)
	}
	if got := balance(t, h, "m1"); got != 5 {
		t.Errorf("balance %d, want 5", got)
	}
	rc, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "web-1"})
	if err != nil || rc.Points != -25 {
		t.Fatalf("reverse: %+v, %v", rc, err)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "web-404"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("reverse of unknown order: %v", err)
	}
	mustCheck(t, h)
}

// TestVoucher_ReuseAcrossChannels: a voucher used online is refused online a second time, but
// a store that was offline and accepted it too gets its use applied and flagged.
func TestVoucher_ReuseAcrossChannels(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "w1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	v, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "w2", MemberID: "m1", RewardID: "five-off"})
	if err != nil || v.Balance != 0 || v.Voucher.Token == "" {
		t.Fatalf("issue voucher: %+v, %v", v, err)
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "w3", Voucher: v.Voucher.Token}); err != nil {
		t.Fatalf("use online: %v", err)
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "w4", Voucher: v.Voucher.Token}); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("second online use: %v, want ECONFLICT", err)
	}
	store := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s2", Member: "m1", Kind: loyalty.KindRedeem, Voucher: v.Voucher.ID,
		Reward: "five-off", RuleVersion: 1, OccurredAt: t0}
	if r := pushOK(t, h, "s2", store).Results[0]; r.Status != lsync.StatusApplied {
		t.Fatalf("offline use at a store: %+v", r)
	}
	cs, _ := h.Conflicts(ctx, 10)
	if len(cs) != 1 || cs[0].Kind != hub.ConflictVoucherReuse || len(cs[0].Deltas) != 2 {
		t.Fatalf("conflicts: %+v", cs)
	}
	mustCheck(t, h)
}

// TestPull_ScopeAndPaging: a store sees its own members, pages through them in version order,
// and the cursor never skips a change.
func TestPull_ScopeAndPaging(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	for i := range 7 {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("x%d", i), HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	var cursor int64
	var program, keys int
	for pages := 0; ; pages++ {
		ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 3, Flushed: true})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Cursor < cursor {
			t.Fatalf("cursor went back from %d to %d", cursor, ch.Cursor)
		}
		for _, m := range ch.Members {
			if m.Version <= cursor || m.Version > ch.Cursor {
				t.Errorf("member %s version %d outside (%d, %d]", m.ID, m.Version, cursor, ch.Cursor)
			}
			seen[m.ID] = true
		}
		if ch.Program != nil {
			program++
		}
		keys += len(ch.Keys)
		cursor = ch.Cursor
		if !ch.More {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 8 || seen["m2"] {
		t.Errorf("store s1 saw %v, want m1 and x0..x6 only", seen)
	}
	if program != 1 || keys != 1 {
		t.Errorf("program sent %d times, keys %d; want 1 and 1", program, keys)
	}
	// A sale at s1 without the member's code (one a store could invent) does not bring m2 in;
	// a sale made from a scan of m2's code does, with full details on the next pull.
	pushOK(t, h, "s1", earn("s1", "m2", 300))
	if ch, _ := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 100, Flushed: true}); len(ch.Members) != 0 {
		t.Errorf("after a sale at s1 without m2's code: %+v", ch.Members)
	}
	pushOK(t, h, "s1", scanned(t, h, earn("s1", "m2", 400)))
	ch, _ := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 100, Flushed: true})
	if len(ch.Members) != 1 || ch.Members[0].ID != "m2" || ch.Members[0].Balance != 7 {
		t.Errorf("after a sale at s1: %+v", ch.Members)
	}
	// Nothing new: the cursor stays and nothing is sent.
	again, _ := h.Pull(ctx, "s1", lsync.Pull{Cursor: ch.Cursor, Limit: 100, Flushed: true})
	if len(again.Members) != 0 || again.Program != nil || again.Cursor != ch.Cursor {
		t.Errorf("empty pull: %+v", again)
	}
}

func TestAuthenticate(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	_, token, err := h.CreateStore(ctx, "s3", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Authenticate(ctx, "s3", token); err != nil {
		t.Fatalf("right token: %v", err)
	}
	for _, c := range []struct{ store, token string }{{"s3", "wrong"}, {"s3", ""}, {"s1", token}, {"nope", token}} {
		if err := h.Authenticate(ctx, c.store, c.token); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
			t.Errorf("%s with %q: %v, want EUNAUTHORIZED", c.store, c.token, err)
		}
	}
	newToken, err := h.RotateStoreToken(ctx, "s3")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Authenticate(ctx, "s3", token); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
		t.Error("old token still works after rotation")
	}
	if err := h.Authenticate(ctx, "s3", newToken); err != nil {
		t.Errorf("new token: %v", err)
	}
	if _, _, err := h.CreateStore(ctx, "online", ""); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("reserved store id: %v", err)
	}
	if _, _, err := h.CreateStore(ctx, "s3", ""); loyalty.ErrorCode(err) != loyalty.EDUPLICATE {
		t.Errorf("duplicate store: %v", err)
	}
}

func TestSetProgram_NewVersionEarnsUnderItsRules(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	p := loyalty.DefaultProgram()
	p.Earn.PointsPerUnit = 2
	got, err := h.SetProgram(ctx, p)
	if err != nil || got.Version != 2 {
		t.Fatalf("set program: %+v, %v", got, err)
	}
	syncStores(t, h)
	// An offline store still on version 1 earns under version 1; both are accepted.
	old := earn("s1", "m1", 1000)
	now := earn("s1", "m1", 1000)
	now.Points, now.RuleVersion = 20, 2
	ack := pushOK(t, h, "s1", old, now)
	for _, r := range ack.Results {
		if r.Status != lsync.StatusApplied {
			t.Errorf("%+v", r)
		}
	}
	if b := balance(t, h, "m1"); b != 30 {
		t.Errorf("balance %d, want 30", b)
	}
	bad := loyalty.DefaultProgram()
	bad.Rewards[1].ID = bad.Rewards[0].ID
	if _, err := h.SetProgram(ctx, bad); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("contradictory program: %v, want EINVALID", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestPush_RejectionIsFinalWhateverTheRecordKeeps: the record of a rejection may not hold the
// delta as its store pushed it (an erased member's country is taken out), and a sale is counted
// apart from the ledger; the same delta pushed again still gets the same answer.
func TestPush_RejectionIsFinalWhateverTheRecordKeeps(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	if _, err := h.EraseMember(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	earned := earn("s1", "m1", 1299)
	earned.Country, earned.OccurredAt = "NZ", t0.Add(time.Hour) // ahead of the hub's clock
	sale := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Kind: loyalty.KindSale, Amount: 1250, Currency: "EUR",
		OccurredAt: t0.Add(time.Hour), OrderID: "N-1"}
	before := balance(t, h, "m1")
	first := pushOK(t, h, "s1", earned, sale).Results
	h.Now = func() time.Time { return t0.Add(2 * time.Hour) } // both would pass now
	again := pushOK(t, h, "s1", earned, sale).Results
	for i, what := range []string{"the erased member's earn", "the sale"} {
		if first[i].Status != lsync.StatusRejected || again[i].Status != lsync.StatusRejected || again[i].Code != first[i].Code {
			t.Errorf("%s: first %+v, then %+v; want the same rejection twice", what, first[i], again[i])
		}
	}
	if got := balance(t, h, "m1"); got != before {
		t.Errorf("m1's balance %d, want %d", got, before)
	}
	if rs, err := h.Rejections(ctx, 10); err != nil || len(rs) != 2 {
		t.Errorf("rejections %+v, %v; want the two, once each", rs, err)
	}
}

// TestCheck_OneAtATime: a check reads every member, so a process runs one at a time. A caller
// arriving while one runs shares its report; one who gives up gets its context's error and does
// not stop the check for the others.
func TestCheck_OneAtATime(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	pushOK(t, h, "s1", earn("s1", "m1", 1299))
	started, joined := make(chan struct{}, 10), make(chan struct{}, 10)
	release := make(chan struct{})
	h.SetCheckHooks(func() { started <- struct{}{}; <-release }, func() { joined <- struct{}{} })
	type result struct {
		r   hub.CheckReport
		err error
	}
	check := func() chan result {
		out := make(chan result, 1)
		go func() { r, err := h.Check(ctx); out <- result{r, err} }()
		return out
	}
	first := check()
	<-started // the first check is reading
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Check(gone); !errors.Is(err, context.Canceled) {
		t.Errorf("a caller who gave up: %v, want context.Canceled", err)
	}
	<-joined
	second := check()
	<-joined // the second caller waits for the first check
	close(release)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatalf("checks: %v, %v", a.err, b.err)
	}
	if a.r.Members != 2 || a.r.Points != balance(t, h, "m1")+balance(t, h, "m2") || len(a.r.Mismatches) != 0 {
		t.Errorf("report %+v: want the 2 members, their points, no mismatch", a.r)
	}
	if a.r.Members != b.r.Members || a.r.Points != b.r.Points {
		t.Errorf("the callers got %+v and %+v, want the one report", a.r, b.r)
	}
	if n := len(started); n != 0 {
		t.Errorf("%d more checks began while one ran", n)
	}
	// Once it is done, the next caller starts a check of its own.
	if r, err := h.Check(ctx); err != nil || r.Members != 2 || len(started) != 1 {
		t.Errorf("a check after it: %+v, %v (%d begun); want a new one", r, err, len(started))
	}
}

// TestCheck_Pages: a check reads 1,000 members to a transaction; one over several pages counts
// every member and every point once, and finds a mismatch on any page.
func TestCheck_Pages(t *testing.T) {
	h := openHub(t)
	var file strings.Builder
	file.WriteString("member_id,points\n")
	const n = 2345
	for i := range n {
		fmt.Fprintf(&file, "p%05d,%d\n", i, i%7)
	}
	if rep := importCSV(t, h, file.String(), hub.ImportOptions{ImportID: "pages", Reason: "check's pages"}); rep.Imported != n {
		t.Fatalf("imported %d of %d", rep.Imported, n)
	}
	var points int64
	for i := range n {
		points += int64(i % 7)
	}
	r, err := h.Check(context.Background())
	if err != nil || r.Members != n+2 || r.Points != points || len(r.Mismatches) != 0 {
		t.Fatalf("check %+v, %v; want %d members (with m1 and m2), %d points, no mismatch", r, err, n+2, points)
	}
	where := whereOf(t, h.Store)
	db := openRaw(t, where)
	if _, err := db.Exec(`UPDATE members SET balance = balance + 1 WHERE id = ?`, "p02000"); err != nil {
		t.Fatal(err)
	}
	if r, err := h.Check(context.Background()); err != nil || len(r.Mismatches) != 1 || !strings.HasPrefix(r.Mismatches[0], "p02000:") {
		t.Errorf("check after a balance on the third page was changed: %+v, %v; want that one mismatch", r, err)
	}
}

// TestCheck_LotsPageByPage: the lots are compared with the ledger a page of members at a time,
// in the page's snapshot; the pages' ranges of ids leave no gap, so a lot changed on any page, one
// of an id before the first member and one past the last are found; and the list stops at 1,000
// lines and says there are more.
func TestCheck_LotsPageByPage(t *testing.T) {
	skipOnPostgres(t, "lots are kept apart from the ledger on SQLite only")
	h := openHub(t)
	var file strings.Builder
	file.WriteString("member_id,points\n")
	const n = 2345
	for i := range n {
		fmt.Fprintf(&file, "p%05d,%d\n", i, 1+i%7) // each a positive adjustment: a lot
	}
	if rep := importCSV(t, h, file.String(), hub.ImportOptions{ImportID: "lots", Reason: "check's lots"}); rep.Imported != n {
		t.Fatalf("imported %d of %d", rep.Imported, n)
	}
	lots := func() []string {
		t.Helper()
		r, err := h.Check(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range r.Mismatches {
			if strings.Contains(m, ": lot of ") || strings.HasPrefix(m, "more lots") {
				out = append(out, m)
			} else {
				t.Errorf("mismatch %q; want only the lots changed below", m)
			}
		}
		return out
	}
	if ms := lots(); len(ms) != 0 {
		t.Fatalf("check of an untouched ledger: %q", ms)
	}
	db := openRaw(t, whereOf(t, h.Store))
	for _, q := range []string{
		// m1, m2 and p00000 to p00997 are the first page: its last and the second's first
		`UPDATE member_lots SET points = points + 1 WHERE member IN ('p00997', 'p00998')`,
		`UPDATE member_lots SET points = points + 1 WHERE member = 'p02344'`, // the third page's last
		`INSERT INTO member_lots (member, at, seq, points) VALUES ('a', 1, 999999001, 5), ('zzz', 1, 999999002, 7)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	got := lots()
	want := []string{"a: lot of ", "p00997: lot of ", "p00998: lot of ", "p02344: lot of ", "zzz: lot of "}
	if len(got) != len(want) {
		t.Fatalf("check found %q; want lots of %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("mismatch %d: %q; want %q…", i, got[i], want[i])
		}
	}
	if _, err := db.Exec(`UPDATE member_lots SET points = points + 1`); err != nil {
		t.Fatal(err)
	}
	got = lots()
	if len(got) != 1001 || got[1000] != "more lots differ from the ledger than the 1000 listed" {
		t.Errorf("check with every lot changed: %d lines, the last %q; want 1,000 and a line that says there are more", len(got), got[len(got)-1])
	}
}
