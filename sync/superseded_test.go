package sync_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Two agents started with one store's token (a till PC that copied another's configuration, an
// old agent still running): the hub keeps one session per store, the newest wins. These tests
// check that the displaced agent is told why, says so, and waits its longest backoff before it
// takes the session back, so the two take turns slowly instead of fighting every second; and that
// the hub warns with both addresses and a hint.

// addrConn is the hub's end of a pipe with the agent's network address, as sync/ws gives it.
type addrConn struct {
	*pipeConn
	addr net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.addr }

// addrDialer serves every dial with a server session that sees the agent at addr.
type addrDialer struct {
	srv  *lsync.Server
	addr net.Addr
	wg   *gosync.WaitGroup
}

func (d addrDialer) Dial(ctx context.Context, url string) (lsync.Conn, error) {
	c, s := pipe()
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.srv.Serve(context.Background(), addrConn{s, d.addr}) }()
	return c, nil
}

// logRecorder is a slog.Handler that keeps every record, for tests that check what was logged.
type logRecorder struct {
	mu      gosync.Mutex
	records []slog.Record
}

func newLogRecorder() *logRecorder { return &logRecorder{} }

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l } // the records checked carry their own attrs
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}

// find returns the attributes of the records at level whose message contains msg.
func (l *logRecorder) find(level slog.Level, msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.records {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		out = append(out, attrs)
	}
	return out
}

// backoffWait is one call of Client.Wait.
type backoffWait struct {
	backoff, wait time.Duration
}

// waitRecorder is a Client.Wait hook: it reports every wait on a channel and holds the client
// there until the test releases it (or the client stops), so the client never reconnects by
// itself.
type waitRecorder struct {
	waits   chan backoffWait
	release chan struct{}
}

func newWaitRecorder() *waitRecorder {
	return &waitRecorder{waits: make(chan backoffWait, 16), release: make(chan struct{}, 16)}
}

func (w *waitRecorder) wait(ctx context.Context, backoff, wait time.Duration) {
	w.waits <- backoffWait{backoff, wait}
	select {
	case <-w.release:
	case <-ctx.Done():
	}
}

// next returns the client's next wait. It fails the test if none comes (a hang, not a speed check).
func (w *waitRecorder) next(t *testing.T, who string) backoffWait {
	t.Helper()
	select {
	case bw := <-w.waits:
		return bw
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never waited to reconnect", who)
		return backoffWait{}
	}
}

const (
	testMinBackoff = time.Millisecond
	testMaxBackoff = time.Hour // far from anything the ordinary backoff reaches in a test
)

// supersedeClient is a client of srv for store s1 whose hub session sees it at addr.
func supersedeClient(srv *lsync.Server, wg *gosync.WaitGroup, addr string) (*lsync.Client, *waitRecorder) {
	ap, _ := net.ResolveTCPAddr("tcp", addr)
	c := lsync.NewClient("pipe://", "s1", "secret", addrDialer{srv: srv, addr: ap, wg: wg}, newAgentFake(0))
	c.Logger, c.MinBackoff, c.MaxBackoff = quiet, testMinBackoff, testMaxBackoff
	w := newWaitRecorder()
	c.Wait = w.wait
	return c, w
}

func supersedeServer(t *testing.T) (*lsync.Server, *logRecorder, *gosync.WaitGroup) {
	t.Helper()
	srv := lsync.NewServer(&hubFake{applied: map[string]bool{}, token: "secret"})
	logs := newLogRecorder()
	srv.Logger = slog.New(logs)
	wg := &gosync.WaitGroup{}
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return srv, logs, wg
}

// TestSupersededAgentIsToldWhyAndBacksOff: agent A is connected; agent B connects with the same
// store and token. The hub warns with both addresses and a hint, tells A why it ends A's session,
// A records the reason as its last error and waits its longest backoff; B, the new connection,
// is not penalised. When A comes back it is B's turn: displaced, told, longest backoff.
func TestSupersededAgentIsToldWhyAndBacksOff(t *testing.T) {
	const addrA, addrB = "192.0.2.1:40001", "192.0.2.2:40002"
	srv, logs, wg := supersedeServer(t)
	a, waitsA := supersedeClient(srv, wg, addrA)
	b, waitsB := supersedeClient(srv, wg, addrB)

	run(t, a)
	eventually(t, "A connected and registered at the hub", func() bool { return a.Status().Online && srv.Sessions() == 1 })
	run(t, b)

	got := waitsA.next(t, "A, displaced by B,")
	if got.backoff != testMaxBackoff {
		t.Errorf("A displaced by another connection: backoff %s, want the longest, %s", got.backoff, testMaxBackoff)
	}
	if got.wait < testMinBackoff/2 || got.wait >= testMaxBackoff+testMinBackoff/2 {
		t.Errorf("A's wait %s is not drawn from its longest backoff [%s, %s)", got.wait, testMinBackoff/2, testMaxBackoff+testMinBackoff/2)
	}
	st := a.Status()
	if st.Online {
		t.Error("A is online after its session was replaced")
	}
	for _, want := range []string{loyalty.ESUPERSEDED, "another connection for store s1", addrB, "give each its own store id"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("A's last error %q does not say %q", st.LastError, want)
		}
	}
	if strings.Contains(st.LastError, addrA) {
		t.Errorf("A's last error %q names A's own address; it should name the connection that took over", st.LastError)
	}
	// The hub displaces A as soon as B's hello is accepted, which can be before B has read its
	// welcome: B's own status turns online a moment later.
	eventually(t, "B, the new connection, online", func() bool { return b.Status().Online })
	if le := b.Status().LastError; le != "" {
		t.Errorf("B, the new connection, has the error %q; want none", le)
	}

	warns := logs.find(slog.LevelWarn, "replaced its live sync session")
	if len(warns) != 1 {
		t.Fatalf("hub warnings about a replaced session: %v, want one", warns)
	}
	w := warns[0]
	if w["store"] != "s1" || w["old_remote"] != addrA || w["new_remote"] != addrB {
		t.Errorf("hub warning %v: want store s1, old_remote %s, new_remote %s", w, addrA, addrB)
	}
	if h := w["hint"]; !strings.Contains(h, "two agents may be running with store s1's token") || !strings.Contains(h, "own store id") {
		t.Errorf("hub warning hint %q: want it to say two agents may share store s1's token and what to do", h)
	}

	// A's backoff ends: it takes the session back, and now B is the displaced one.
	waitsA.release <- struct{}{}
	got = waitsB.next(t, "B, displaced by A,")
	if got.backoff != testMaxBackoff {
		t.Errorf("B displaced by another connection: backoff %s, want the longest, %s", got.backoff, testMaxBackoff)
	}
	if le := b.Status().LastError; !strings.Contains(le, loyalty.ESUPERSEDED) || !strings.Contains(le, addrA) {
		t.Errorf("B's last error %q: want %s naming A's address %s", le, loyalty.ESUPERSEDED, addrA)
	}
	eventually(t, "A online again", func() bool { return a.Status().Online })
	if n := len(logs.find(slog.LevelWarn, "replaced its live sync session")); n != 2 {
		t.Errorf("%d hub warnings after two replacements, want 2", n)
	}
	select {
	case bw := <-waitsA.waits:
		t.Errorf("A, the new connection, was made to wait %+v", bw)
	default:
	}
}

// TestOrdinarySessionEndKeepsShortBackoff: a session that ends for any other reason (here the
// hub drops it) is followed by the ordinary backoff, not the longest: only a displaced session
// is slowed down.
func TestOrdinarySessionEndKeepsShortBackoff(t *testing.T) {
	srv, logs, wg := supersedeServer(t)
	a, waitsA := supersedeClient(srv, wg, "192.0.2.1:40001")
	run(t, a)
	eventually(t, "A connected and registered at the hub", func() bool { return a.Status().Online && srv.Sessions() == 1 })
	srv.Disconnect("s1")
	if got := waitsA.next(t, "A, disconnected,"); got.backoff != testMinBackoff {
		t.Errorf("after an ordinary disconnect: backoff %s, want the shortest, %s", got.backoff, testMinBackoff)
	}
	if le := a.Status().LastError; strings.Contains(le, loyalty.ESUPERSEDED) {
		t.Errorf("last error %q after an ordinary disconnect", le)
	}
	if w := logs.find(slog.LevelWarn, "replaced its live sync session"); len(w) != 0 {
		t.Errorf("hub warned of a replaced session after an ordinary disconnect: %v", w)
	}
}

// TestRestartedAgentIsNotSlowed: an agent restarts while the hub still holds its old, half-open
// session. The new connection takes over at once and stays; the old connection gets an error
// with the code ESUPERSEDED naming the new one's address (an agent of any version reads an error
// that ends its session; one that knows the code also backs off), then the end of the session.
func TestRestartedAgentIsNotSlowed(t *testing.T) {
	const newAddr = "192.0.2.9:40009"
	srv, _, wg := supersedeServer(t)
	ctx := context.Background()

	old, s := pipe()
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ctx, addrConn{s, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 39999}})
	}()
	rvSend(t, old, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: "secret"}})
	if m := rvRead(t, old); m.Type != lsync.TypeWelcome {
		t.Fatalf("old connection: got %s, want welcome", m.Type)
	}
	eventually(t, "the old session registered", func() bool { return srv.Sessions() == 1 })

	a, waitsA := supersedeClient(srv, wg, newAddr)
	run(t, a)

	m := rvRead(t, old)
	if m.Type != lsync.TypeError || m.ID != 0 || m.Error.Code != loyalty.ESUPERSEDED {
		t.Fatalf("old connection: got %s %+v, want an error with the code %s", m.Type, m.Error, loyalty.ESUPERSEDED)
	}
	if !strings.Contains(m.Error.Message, newAddr) || strings.Contains(m.Error.Message, "39999") {
		t.Errorf("the error %q should name the new connection's address %s, and only it", m.Error.Message, newAddr)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if b, err := old.Read(rctx); err == nil {
		t.Errorf("after %s the hub sent %s; want the connection closed", loyalty.ESUPERSEDED, b)
	}
	eventually(t, "the restarted agent online", func() bool { return a.Status().Online })
	if st := a.Status(); st.LastError != "" || st.Sessions != 1 {
		t.Errorf("restarted agent: %+v, want one session and no error", st)
	}
	select {
	case bw := <-waitsA.waits:
		t.Errorf("the restarted agent was made to wait %+v", bw)
	default:
	}
}

// gatedAgent is an agent whose first outbox read waits for the test: the session is busy while
// the hub says goodbye.
type gatedAgent struct {
	*agentFake
	entered, release chan struct{}
	once             gosync.Once
}

func (a *gatedAgent) Pending(ctx context.Context, after int64, limit int) ([]lsync.Outgoing, error) {
	a.once.Do(func() { close(a.entered); <-a.release })
	return a.agentFake.Pending(ctx, after, limit)
}

// oneDialer hands out one connection, then fails.
type oneDialer struct{ conn chan lsync.Conn }

func (d oneDialer) Dial(ctx context.Context, url string) (lsync.Conn, error) {
	select {
	case c := <-d.conn:
		return c, nil
	default:
		return nil, io.EOF
	}
}

// TestSupersededReasonSurvivesFailedWrite: the hub says ESUPERSEDED and closes while the agent is
// busy; the agent's next write fails on the closed connection before it reads the goodbye. It
// must still learn why (and back off), not report "connection closed".
func TestSupersededReasonSurvivesFailedWrite(t *testing.T) {
	c, h := pipe()
	d := oneDialer{conn: make(chan lsync.Conn, 1)}
	d.conn <- c
	a := &gatedAgent{agentFake: newAgentFake(0), entered: make(chan struct{}), release: make(chan struct{})}
	cl := lsync.NewClient("pipe://", "s1", "secret", d, a)
	cl.Logger, cl.MinBackoff, cl.MaxBackoff = quiet, testMinBackoff, testMaxBackoff
	waits := newWaitRecorder()
	cl.Wait = waits.wait
	run(t, cl)

	if m := rvRead(t, h); m.Type != lsync.TypeHello {
		t.Fatalf("got %s, want hello", m.Type)
	}
	rvSend(t, h, &lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: 1, Store: "s1", HeartbeatMillis: 10_000}})
	select {
	case <-a.entered: // the session is reading its outbox
	case <-time.After(10 * time.Second):
		t.Fatal("the session never read its outbox")
	}
	rvSend(t, h, &lsync.Message{Type: lsync.TypeError, Error: lsync.Superseded("s1", "192.0.2.2:40002")})
	h.Close()
	close(a.release) // the session goes on to pull, on a closed connection

	if got := waits.next(t, "the displaced agent"); got.backoff != testMaxBackoff {
		t.Errorf("backoff %s, want the longest, %s", got.backoff, testMaxBackoff)
	}
	if le := cl.Status().LastError; !strings.Contains(le, loyalty.ESUPERSEDED) || !strings.Contains(le, "192.0.2.2:40002") {
		t.Errorf("last error %q: want the hub's %s naming the other connection", le, loyalty.ESUPERSEDED)
	}
}
