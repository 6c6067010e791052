package sync_test

import (
	"context"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func rvHub(t *testing.T) *hub.Hub {
	t.Helper()
	ctx := context.Background()
	s, err := hubsqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := hub.New(s)
	h.KEK = seal.NewRandom()
	h.Logger = quiet
	if err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

func rvSend(t *testing.T, c lsync.Conn, m *lsync.Message) {
	t.Helper()
	b, _ := lsync.Encode(m)
	if err := c.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func rvRead(t *testing.T, c lsync.Conn) *lsync.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := lsync.Decode(b)
		if m.Type == lsync.TypeNotify {
			continue
		}
		return m
	}
}

// Finding: rotating a store's token does not end the session opened with the old token.
func TestTokenRotationEndsLiveSession(t *testing.T) {
	ctx := context.Background()
	h := rvHub(t)
	_, tok, _ := h.CreateStore(ctx, "s1", "")
	h.CreateMember(ctx, loyalty.Member{ID: "m1", HomeStore: "s1"})
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	h.OnTokenRotated = srv.Disconnect // as cmd/loyalty wires it
	defer srv.Close()
	c, s := pipe()
	go srv.Serve(ctx, s)
	rvSend(t, c, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: tok}})
	if m := rvRead(t, c); m.Type != lsync.TypeWelcome {
		t.Fatalf("got %s", m.Type)
	}
	if _, err := h.RotateStoreToken(ctx, "s1"); err != nil { // "the old one stops working at once"
		t.Fatal(err)
	}
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindEarn, Points: 1000, Amount: 100000,
		Currency: "EUR", RuleVersion: 1, OccurredAt: time.Now()}
	b, _ := lsync.Encode(&lsync.Message{Type: lsync.TypePush, ID: 1, Push: &lsync.Push{Deltas: []loyalty.Delta{d}}})
	c.Write(ctx, b) // may fail: the session may already be gone
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		raw, err := c.Read(rctx)
		if err != nil {
			break // the session ended: the old token is useless at once
		}
		if m, _ := lsync.Decode(raw); m != nil && m.Type == lsync.TypeAck && m.Ack.Results[0].Status == lsync.StatusApplied {
			t.Fatal("a session authenticated with a revoked token still applies deltas")
		}
	}
	v, err := h.Member(ctx, "m1", 0)
	if err != nil || v.Balance != 0 {
		t.Errorf("member after the revoked session: %+v, %v", v.Member, err)
	}
}

// sessionKey tags the context a test passes to Serve with a session number. Every Handler call
// of that session gets a context derived from it, the deferred disconnect included.
type sessionKey struct{}

// seenCall is one Seen call of a session, logged when it starts and again when it returns.
type seenCall struct {
	session   int
	connected bool
	returned  bool
}

// seenRecorder is a real hub whose Seen calls are logged, in the order they start and return.
type seenRecorder struct {
	*hub.Hub
	mu      gosync.Mutex
	calls   []seenCall
	changed chan struct{} // signalled after every log entry
}

func (r *seenRecorder) Seen(ctx context.Context, store string, h lsync.Health) error {
	n, _ := ctx.Value(sessionKey{}).(int)
	r.record(seenCall{session: n, connected: h.Connected})
	err := r.Hub.Seen(ctx, store, h)
	r.record(seenCall{session: n, connected: h.Connected, returned: true})
	return err
}

func (r *seenRecorder) record(c seenCall) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default: // a signal is already pending
	}
}

// index returns the position of the first c in the log, or -1.
func (r *seenRecorder) index(c seenCall) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.calls {
		if x == c {
			return i
		}
	}
	return -1
}

func (r *seenRecorder) log() []seenCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenCall(nil), r.calls...)
}

// waitFor blocks until c is in the log. It fails the test if that never happens (a hang).
func (r *seenRecorder) waitFor(t *testing.T, c seenCall) {
	t.Helper()
	hang := time.NewTimer(10 * time.Second)
	defer hang.Stop()
	for r.index(c) < 0 {
		select {
		case <-r.changed:
		case <-hang.C:
			t.Fatalf("no Seen call %+v; calls: %+v", c, r.log())
		}
	}
}

// Finding: a new session for a store cancels the old one but does not wait for it; the old
// session's deferred Seen(Connected:false) lands after the new session's Seen(Connected:true).
//
// The test waits for events, not for time. For each reconnect it waits until the new session's
// Seen(Connected:true) has returned and the old session's Serve has returned (so its deferred
// Seen(Connected:false) has returned too): both writes are done and the hub's state is final.
// Then it checks
//   - the order: the old session's disconnect returned before the new session's connect began.
//     The Server promises this (Handler: one session goroutine at a time per store; register
//     waits for the old session). Without that wait, the new session calls Seen as soon as it
//     has cancelled the old one, while the old one has yet to wake up and write through the hub's
//     database, so the order breaks in nearly every reconnect, whatever the machine's load;
//   - the outcome: the hub reports the store connected. Without the wait this fails whenever the
//     old session's write lands last.
//
// Either check fails the test if the bug comes back; neither depends on how long anything takes.
func TestReconnectKeepsStoreConnected(t *testing.T) {
	ctx := context.Background()
	rec := &seenRecorder{Hub: rvHub(t), changed: make(chan struct{}, 1)}
	_, tok, _ := rec.CreateStore(ctx, "s1", "")
	srv := lsync.NewServer(rec)
	srv.Logger = quiet
	defer srv.Close()
	const N = 30
	var prevDone chan struct{}
	for i := 1; i <= N; i++ {
		c, s := pipe()
		done := make(chan struct{})
		go func() { srv.Serve(context.WithValue(ctx, sessionKey{}, i), s); close(done) }()
		rvSend(t, c, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: tok}})
		if m := rvRead(t, c); m.Type != lsync.TypeWelcome {
			t.Fatalf("session %d: got %s, want welcome", i, m.Type)
		}
		rec.waitFor(t, seenCall{session: i, connected: true, returned: true})
		if prevDone == nil {
			prevDone = done
			continue
		}
		select {
		case <-prevDone: // the old session has ended, its deferred Seen(Connected:false) included
		case <-time.After(10 * time.Second):
			t.Fatalf("session %d did not end after session %d replaced it", i-1, i)
		}
		prevDone = done
		disconnected := rec.index(seenCall{session: i - 1, connected: false, returned: true})
		connected := rec.index(seenCall{session: i, connected: true})
		if disconnected < 0 || disconnected > connected {
			t.Errorf("reconnect %d: the new session's Seen(Connected:true) began (call %d) before the old session's Seen(Connected:false) returned (call %d); calls: %+v",
				i, connected, disconnected, rec.log())
		}
		st, err := rec.Stores(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st[0].Health.Connected {
			t.Errorf("reconnect %d: store with a live session shown as disconnected (sessions=%d)", i, srv.Sessions())
		}
		if t.Failed() {
			return
		}
	}
}

// slowHub applies pushes slowly, as a hub whose single writer is queued behind other stores.
type slowHub struct {
	hubFake
	delay   time.Duration
	entered chan struct{} // signalled when a push starts
}

func (h *slowHub) Push(ctx context.Context, store string, ds []loyalty.Delta) (*lsync.Ack, error) {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	// The scenario, not synchronisation: a push that takes longer than the session's silence
	// limit. Load only makes it take longer, which the session must survive all the same.
	select {
	case <-time.After(h.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.hubFake.Push(ctx, store, ds)
}

// Finding: pongs are answered by the session goroutine after Handler.Push returns, and the idle
// timer races queued messages: a push slower than 3 heartbeats kills a live session on both sides.
//
// While the hub works on a push that outlasts the silence limit, the agent sends pings: the
// session's reader holds the first and the rest wait in the connection. When the push returns,
// the heartbeat tick and the held ping are both ready. From there the test waits for events
// only: the ack and a pong for every ping (the session lived through that moment), or the end of
// the connection (it was dropped). With the bug the session takes the tick over the ping, and
// drops the agent as silent, in about half the iterations (select picks among ready cases at
// random), so the test misses it with probability 2^-N. Load cannot fail the fixed session: a
// late ping or a slower push only makes the silence longer, and a session that finds a message
// waiting counts it as a sign of life however long the silence was.
func TestSlowPushKeepsSessionAlive(t *testing.T) {
	const heartbeat = 100 * time.Millisecond // silence limit 300ms
	const pings = 3
	const N = 6
	kills := 0
	for i := 0; i < N; i++ {
		h := &slowHub{hubFake: hubFake{applied: map[string]bool{}, token: "secret"}, delay: 9 * heartbeat / 2, entered: make(chan struct{}, 1)}
		srv := lsync.NewServer(h)
		srv.Logger = quiet
		srv.HeartbeatInterval = heartbeat
		c, s := pipe()
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(context.Background(), s) }()
		rvSend(t, c, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: "secret"}})
		rvRead(t, c)
		rvSend(t, c, &lsync.Message{Type: lsync.TypePush, ID: 1, Push: &lsync.Push{Deltas: []loyalty.Delta{{ID: "d1"}}}})
		select {
		case <-h.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the push never reached the hub")
		}
		want := map[uint64]bool{1: true} // the ack, then a pong per ping
		for id := uint64(2); id < 2+pings; id++ {
			rvSend(t, c, &lsync.Message{Type: lsync.TypePing, ID: id, Ping: &lsync.Ping{}})
			want[id] = true
		}
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		dropped := false
		for len(want) > 0 {
			b, err := c.Read(rctx)
			if err != nil {
				dropped = true
				break
			}
			if m, err := lsync.Decode(b); err == nil {
				delete(want, m.ID)
			}
		}
		cancel()
		srv.Close()
		if err := <-errc; dropped {
			if err == nil || !strings.Contains(err.Error(), "silent") {
				t.Fatalf("iteration %d: the session ended before answering everything: %v", i, err)
			}
			kills++
		}
	}
	t.Logf("%d of %d live sessions were dropped as silent after one push slower than 3 heartbeats", kills, N)
	if kills > 0 {
		t.Errorf("live sessions dropped")
	}
}
