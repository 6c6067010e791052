package sync_test

// The hub-side session's own machinery: the hello timeout, the silence check, notifications
// (coalesced, and held until the session runs), and Start, which runs a session without holding
// its caller. A session holds one goroutine while idle (docs/PROTOCOL.md, "Transport"); these
// tests check that what it starts on demand does what the former session loop did.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// sessSafety bounds every wait, so a broken session fails a test instead of hanging it.
const sessSafety = 10 * time.Second

func newHubFake() *hubFake { return &hubFake{applied: map[string]bool{}, token: "secret"} }

func sessServer(h lsync.Handler) *lsync.Server {
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	return srv
}

func hello(t *testing.T, c lsync.Conn, token string) *lsync.Message {
	t.Helper()
	rvSend(t, c, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: token}})
	return rvRead(t, c)
}

// readAny returns the next message, notifications included.
func readAny(t *testing.T, c lsync.Conn) *lsync.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sessSafety)
	defer cancel()
	b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lsync.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func served(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(sessSafety):
		t.Fatal("the session never ended")
		return nil
	}
}

// TestHelloTimeout: a connection that says nothing is told why and dropped.
func TestHelloTimeout(t *testing.T) {
	srv := sessServer(newHubFake())
	srv.HelloTimeout = 50 * time.Millisecond // the scenario: an agent slower than this
	defer srv.Close()
	c, s := pipe()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), s) }()
	m := readAny(t, c)
	if m.Type != lsync.TypeError || m.Error.Code != loyalty.EUNAUTHORIZED || !strings.Contains(m.Error.Message, "no hello within") {
		t.Fatalf("got %s %+v, want EUNAUTHORIZED: no hello within", m.Type, m.Error)
	}
	if err := served(t, errc); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
		t.Errorf("Serve: %v, want the hello timeout", err)
	}
}

// TestSilentSessionIsDropped: a session that hears nothing for 3 heartbeats ends.
func TestSilentSessionIsDropped(t *testing.T) {
	srv := sessServer(newHubFake())
	srv.HeartbeatInterval = 20 * time.Millisecond // the scenario: an agent silent far longer
	defer srv.Close()
	c, s := pipe()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), s) }()
	if m := hello(t, c, "secret"); m.Type != lsync.TypeWelcome {
		t.Fatalf("got %s, want welcome", m.Type)
	}
	if err := served(t, errc); err == nil || !strings.Contains(err.Error(), "silent") {
		t.Errorf("Serve: %v, want the store dropped as silent", err)
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// gatedHub blocks the first Pull, and the Seen that records a connection, until released.
type gatedHub struct {
	*hubFake
	pull, seen gate
}

type gate struct{ entered, release chan struct{} }

func newGate() gate { return gate{make(chan struct{}, 1), make(chan struct{})} }

func (g gate) pass(ctx context.Context) {
	if g.entered == nil {
		return
	}
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
}

func (g gate) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(sessSafety):
		t.Fatalf("%s never started", what)
	}
}

func (h *gatedHub) Pull(ctx context.Context, store string, req lsync.Pull) (*lsync.Changes, error) {
	h.pull.pass(ctx)
	return h.hubFake.Pull(ctx, store, req)
}

func (h *gatedHub) Seen(ctx context.Context, store string, s lsync.Health) error {
	if s.Connected {
		h.seen.pass(ctx)
	}
	return nil
}

// pullHeld starts a session whose hub holds its first Pull (request id 1) until h.pull.release
// is closed; it returns once the pull has reached the hub. The server is closed when t ends.
func pullHeld(t *testing.T) (*gatedHub, *lsync.Server, lsync.Conn) {
	t.Helper()
	h := &gatedHub{hubFake: newHubFake(), pull: newGate()}
	srv := sessServer(h)
	t.Cleanup(func() { srv.Close() })
	c, s := pipe()
	go srv.Serve(context.Background(), s)
	if m := hello(t, c, "secret"); m.Type != lsync.TypeWelcome {
		t.Fatalf("got %s, want welcome", m.Type)
	}
	rvSend(t, c, &lsync.Message{Type: lsync.TypePull, ID: 1, Pull: &lsync.Pull{}})
	h.pull.wait(t, "the pull")
	return h, srv, c
}

// TestNotifyCoalescesWhileBusy: notifications while the session handles a request become one,
// with the newest cursor, sent after the reply; an idle session is notified at once.
func TestNotifyCoalescesWhileBusy(t *testing.T) {
	h, srv, c := pullHeld(t)
	for _, cursor := range []int64{5, 9, 7} {
		srv.Notify(cursor)
	}
	close(h.pull.release)
	if m := readAny(t, c); m.Type != lsync.TypeChanges || m.ID != 1 {
		t.Fatalf("got %s id %d, want the changes", m.Type, m.ID)
	}
	if m := readAny(t, c); m.Type != lsync.TypeNotify || m.Notify.Cursor != 9 {
		t.Fatalf("got %s %+v, want one notify with the newest cursor, 9", m.Type, m.Notify)
	}
	rvSend(t, c, &lsync.Message{Type: lsync.TypePing, ID: 2, Ping: &lsync.Ping{}})
	if m := readAny(t, c); m.Type != lsync.TypePong || m.ID != 2 {
		t.Fatalf("got %s id %d, want the pong: the three notifications were one", m.Type, m.ID)
	}
	srv.Notify(11)
	if m := readAny(t, c); m.Type != lsync.TypeNotify || m.Notify.Cursor != 11 {
		t.Fatalf("got %s %+v, want a notify with cursor 11", m.Type, m.Notify)
	}
}

// TestNotifyWaitsForTheSession: notifications while the session is still starting (its store
// being recorded as connected) are one, sent once it runs.
func TestNotifyWaitsForTheSession(t *testing.T) {
	h := &gatedHub{hubFake: newHubFake(), seen: newGate()}
	srv := sessServer(h)
	defer srv.Close()
	c, s := pipe()
	go srv.Serve(context.Background(), s)
	if m := hello(t, c, "secret"); m.Type != lsync.TypeWelcome {
		t.Fatalf("got %s, want welcome", m.Type)
	}
	h.seen.wait(t, "recording the store as connected")
	for _, cursor := range []int64{3, 4, 5} {
		srv.Notify(cursor)
	}
	close(h.seen.release)
	// Every message up to the pong for a ping sent after the session started, and the pong for
	// a second ping sent after that: a notification left pending would come by then.
	got := map[string]int{}
	for id := uint64(1); id <= 2; id++ {
		rvSend(t, c, &lsync.Message{Type: lsync.TypePing, ID: id, Ping: &lsync.Ping{}})
		for {
			m := readAny(t, c)
			got[m.Type]++
			if m.Type == lsync.TypeNotify && m.Notify.Cursor != 5 {
				t.Errorf("notify with cursor %d, want the newest, 5", m.Notify.Cursor)
			}
			if m.Type == lsync.TypePong && m.ID == id {
				break
			}
		}
	}
	if got[lsync.TypeNotify] != 1 || got[lsync.TypePong] != 2 || len(got) != 2 {
		t.Errorf("messages %v, want one notify and two pongs", got)
	}
}

// TestStartReturnsAfterHandshake: Start runs the handshake on its caller's goroutine and the
// session on its own; ended says why the session ended, once. A refused hello ends it before
// Start returns.
func TestStartReturnsAfterHandshake(t *testing.T) {
	srv := sessServer(newHubFake())
	defer srv.Close()
	c, s := pipe()
	ended := make(chan error, 2)
	started := make(chan struct{})
	go func() { srv.Start(context.Background(), s, func(err error) { ended <- err }); close(started) }()
	if m := hello(t, c, "secret"); m.Type != lsync.TypeWelcome {
		t.Fatalf("got %s, want welcome", m.Type)
	}
	select {
	case <-started:
	case <-time.After(sessSafety):
		t.Fatal("Start did not return after the handshake")
	}
	rvSend(t, c, &lsync.Message{Type: lsync.TypePing, ID: 1, Ping: &lsync.Ping{}})
	if m := rvRead(t, c); m.Type != lsync.TypePong || m.ID != 1 {
		t.Fatalf("got %s id %d, want the pong from the running session", m.Type, m.ID)
	}
	srv.Disconnect("s1")
	if err := served(t, ended); !errors.Is(err, context.Canceled) {
		t.Errorf("ended with %v, want the session's cancellation", err)
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}

	c, s = pipe()
	go srv.Start(context.Background(), s, func(err error) { ended <- err })
	if m := hello(t, c, "wrong"); m.Type != lsync.TypeError || m.Error.Code != loyalty.EUNAUTHORIZED {
		t.Fatalf("got %s, want EUNAUTHORIZED", m.Type)
	}
	if err := served(t, ended); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
		t.Errorf("ended with %v, want the refused hello", err)
	}
	select {
	case err := <-ended:
		t.Errorf("ended called twice, again with %v", err)
	default:
	}
}

// TestBusyCountsSessionsWithWorkInHand: a session handling a request is busy; once it has
// answered and nothing else waits, it is not.
func TestBusyCountsSessionsWithWorkInHand(t *testing.T) {
	h, srv, c := pullHeld(t)
	if n := srv.Busy(); n != 1 {
		t.Errorf("%d busy sessions while a pull is being handled, want 1", n)
	}
	close(h.pull.release)
	if m := readAny(t, c); m.Type != lsync.TypeChanges {
		t.Fatalf("got %s, want the changes", m.Type)
	}
	eventually(t, "the session idle once it has answered", func() bool { return srv.Busy() == 0 })
}
