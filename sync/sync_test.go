package sync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// pipeConn is one end of an in-memory connection: a unit seam for the session state machines.
type pipeConn struct {
	in, out chan []byte
	done    chan struct{}
	once    *gosync.Once
}

func pipe() (*pipeConn, *pipeConn) {
	a, b := make(chan []byte, 64), make(chan []byte, 64)
	done, once := make(chan struct{}), &gosync.Once{}
	return &pipeConn{in: a, out: b, done: done, once: once}, &pipeConn{in: b, out: a, done: done, once: once}
}

// Read returns the next message. Messages written before the connection was closed are read
// first, as over TCP: a peer that writes an error and closes is heard saying why.
func (p *pipeConn) Read(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.in:
		return b, nil
	case <-p.done:
		select {
		case b := <-p.in:
			return b, nil
		default:
			return nil, io.EOF
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipeConn) Write(ctx context.Context, b []byte) error {
	select {
	case <-p.done:
		return lsync.ErrClosed
	default:
	}
	select {
	case p.out <- b:
		return nil
	case <-p.done:
		return lsync.ErrClosed
	}
}

func (p *pipeConn) Close() error { p.once.Do(func() { close(p.done) }); return nil }

// hubFake records what the server session asked of it, in order.
type hubFake struct {
	mu      gosync.Mutex
	calls   []string
	applied map[string]bool
	version int64
	token   string
	epoch   int64
	qr      string // the code of the last subscribe
}

func (h *hubFake) Epoch(ctx context.Context, store string) (int64, time.Time, error) {
	return h.epoch, time.UnixMilli(1_700_000_000_000), nil
}

func (h *hubFake) log(s string) { h.mu.Lock(); h.calls = append(h.calls, s); h.mu.Unlock() }

func (h *hubFake) Authenticate(ctx context.Context, store, token string) error {
	if token != h.token {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "wrong token")
	}
	return nil
}

func (h *hubFake) Push(ctx context.Context, store string, ds []loyalty.Delta) (*lsync.Ack, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ack := &lsync.Ack{}
	for _, d := range ds {
		st := lsync.StatusApplied
		if h.applied[d.ID] {
			st = lsync.StatusDuplicate
		}
		h.applied[d.ID] = true
		h.version++
		ack.Results = append(ack.Results, lsync.Result{DeltaID: d.ID, Status: st, Seq: h.version})
		h.calls = append(h.calls, "push "+d.ID)
	}
	return ack, nil
}

func (h *hubFake) Pull(ctx context.Context, store string, req lsync.Pull) (*lsync.Changes, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, fmt.Sprintf("pull %d", req.Cursor))
	return &lsync.Changes{Cursor: h.version}, nil
}

func (h *hubFake) Subscribe(ctx context.Context, store string, req lsync.Subscribe) (*loyalty.Member, *lsync.Standing, error) {
	if req.Member == "ghost" {
		return nil, nil, loyalty.Errorf(loyalty.ENOTFOUND, "no member ghost")
	}
	h.mu.Lock()
	h.qr = req.QR
	h.mu.Unlock()
	st := &lsync.Standing{Redemptions: []lsync.Usage{{Period: loyalty.PeriodDay, Used: 2}}}
	if req.Voucher != "" {
		st.Voucher = lsync.VoucherUsed
	}
	return &loyalty.Member{ID: req.Member, Balance: 42, Version: 1}, st, nil
}

func (h *hubFake) Seen(ctx context.Context, store string, s lsync.Health) error { return nil }

// agentFake is an in-memory outbox and cursor.
type agentFake struct {
	mu      gosync.Mutex
	outbox  []lsync.Outgoing
	acked   map[string]int
	status  map[string]string // the last outcome of each delta: status, and code when rejected
	cursor  int64
	members map[string]loyalty.Member
	epochs  []int64 // every epoch a session reported, in order
}

func newAgentFake(n int) *agentFake {
	a := &agentFake{acked: map[string]int{}, status: map[string]string{}, members: map[string]loyalty.Member{}}
	for i := range n {
		a.outbox = append(a.outbox, lsync.Outgoing{Seq: int64(i + 1), Delta: loyalty.Delta{ID: fmt.Sprintf("d%03d", i+1)}})
	}
	return a
}

func (a *agentFake) Cursor(ctx context.Context) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cursor, nil
}

func (a *agentFake) Pending(ctx context.Context, after int64, limit int) ([]lsync.Outgoing, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []lsync.Outgoing
	for _, o := range a.outbox {
		if o.Seq > after && a.acked[o.Delta.ID] == 0 && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (a *agentFake) Epoch(ctx context.Context, epoch int64, since time.Time, offset time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.acked) > 0 || a.cursor != 0 {
		epoch = -epoch // told too late: after an ack or a page of changes
	}
	a.epochs = append(a.epochs, epoch)
	return nil
}

func (a *agentFake) PendingCount(ctx context.Context) (int64, error) {
	p, _ := a.Pending(ctx, 0, 1<<30)
	return int64(len(p)), nil
}

func (a *agentFake) ApplyAck(ctx context.Context, ack *lsync.Ack) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range ack.Results {
		a.acked[r.DeltaID]++
		a.status[r.DeltaID] = strings.TrimSpace(r.Status + " " + r.Code)
	}
	return nil
}

func (a *agentFake) ApplyChanges(ctx context.Context, ch *lsync.Changes) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cursor = ch.Cursor
	return nil
}

func (a *agentFake) ApplyMember(ctx context.Context, m *loyalty.Member) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.members[m.ID] = *m
	return nil
}

// pipeDialer serves every dial with a fresh pipe whose other end runs a server session.
type pipeDialer struct {
	srv *lsync.Server
	wg  gosync.WaitGroup
	err error
}

func (d *pipeDialer) Dial(ctx context.Context, url string) (lsync.Conn, error) {
	if d.err != nil {
		return nil, d.err
	}
	c, s := pipe()
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.srv.Serve(context.Background(), s) }()
	return c, nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func setup(t *testing.T, outbox int, token string) (*hubFake, *agentFake, *lsync.Client, *pipeDialer) {
	t.Helper()
	h := &hubFake{applied: map[string]bool{}, token: "secret"}
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	srv.MaxBatch = 10
	a := newAgentFake(outbox)
	d := &pipeDialer{srv: srv}
	c := lsync.NewClient("pipe://", "s1", token, d, a)
	c.Logger, c.MinBackoff, c.MaxBackoff = quiet, time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { srv.Close(); d.wg.Wait() })
	return h, a, c, d
}

func run(t *testing.T, c *lsync.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually waits until cond holds: the state it checks is reached by goroutines the test does
// not step (the client's session loop). The sleep only paces the polling; nothing is asserted
// about time, and the 10 s deadline only turns a hang into a failure.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(2 * time.Millisecond) // paces the polling of the condition above; nothing waits for time itself
	}
}

// TestClient_PushesWholeOutboxBeforeFirstPull checks the ordering rule that keeps an agent from
// counting a delta twice (docs/PROTOCOL.md, "Ordering").
func TestClient_PushesWholeOutboxBeforeFirstPull(t *testing.T) {
	h, a, c, _ := setup(t, 37, "secret") // more than Window x batch size
	run(t, c)
	eventually(t, "outbox drained", func() bool { n, _ := a.PendingCount(context.Background()); return n == 0 })
	eventually(t, "first pull", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.calls) > 37
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, call := range h.calls[:37] {
		if want := fmt.Sprintf("push d%03d", i+1); call != want {
			t.Fatalf("call %d = %q, want %q (all pushes, in outbox order, before any pull)", i, call, want)
		}
	}
	if h.calls[37] != "pull 0" {
		t.Fatalf("call 37 = %q, want the first pull", h.calls[37])
	}
}

func TestClient_DuplicatePushIsAcknowledgedOnce(t *testing.T) {
	h, a, c, _ := setup(t, 12, "secret")
	c.Faults.DuplicatePush = true
	run(t, c)
	eventually(t, "duplicates acknowledged", func() bool { return c.Status().Duplicates == 12 })
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := len(h.applied); got != 12 {
		t.Errorf("hub applied %d distinct deltas, want 12", got)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, n := range a.acked {
		if n != 2 {
			t.Errorf("%s acknowledged %d times, want 2 (once applied, once duplicate)", id, n)
		}
	}
}

// TestClient_CrashBeforeAckRedelivers: the ack is lost once; the delta is pushed again in the
// next session and acknowledged as a duplicate.
func TestClient_CrashBeforeAckRedelivers(t *testing.T) {
	h, a, c, _ := setup(t, 3, "secret")
	var mu gosync.Mutex
	crashed := false
	c.Faults.BeforeAck = func(*lsync.Ack) error {
		mu.Lock()
		defer mu.Unlock()
		if !crashed {
			crashed = true
			return fmt.Errorf("simulated crash")
		}
		return nil
	}
	run(t, c)
	// The client records an ack in its outbox (ApplyAck) before it counts it in its status, so an
	// empty outbox alone does not mean the counts below are final: wait for both.
	eventually(t, "outbox drained and its acks counted", func() bool {
		n, _ := a.PendingCount(context.Background())
		return n == 0 && c.Status().DeltasConfirmed >= 3
	})
	if got := c.Status().Sessions; got < 2 {
		t.Errorf("sessions = %d, want a reconnect after the crash", got)
	}
	if got := c.Status().Duplicates; got < 1 {
		t.Errorf("duplicates = %d, want the lost ack's deltas redelivered", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.applied) != 3 {
		t.Errorf("applied %d, want 3", len(h.applied))
	}
}

func TestClient_WrongTokenIsRefused(t *testing.T) {
	_, a, c, _ := setup(t, 1, "wrong")
	run(t, c)
	eventually(t, "refusal recorded", func() bool { return c.Status().LastError != "" })
	if st := c.Status(); st.Online {
		t.Error("online with a wrong token")
	}
	if got := c.Status().LastError; !strings.Contains(got, loyalty.EUNAUTHORIZED) {
		t.Errorf("last error %q does not carry EUNAUTHORIZED", got)
	}
	if n, _ := a.PendingCount(context.Background()); n != 1 {
		t.Errorf("outbox = %d after a refused session, want the delta kept", n)
	}
}

func TestClient_Subscribe(t *testing.T) {
	h, a, c, _ := setup(t, 0, "secret")
	ctx := context.Background()
	if _, err := c.Subscribe(ctx, "m1"); loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE {
		t.Fatalf("offline subscribe: %v, want EUNAVAILABLE", err)
	}
	run(t, c)
	eventually(t, "online", func() bool { return c.Status().Online })
	m, err := c.Subscribe(ctx, "m1")
	if err != nil || m.Balance != 42 {
		t.Fatalf("subscribe: %+v, %v", m, err)
	}
	a.mu.Lock()
	stored := a.members["m1"]
	a.mu.Unlock()
	if stored.Balance != 42 {
		t.Errorf("member not applied to the replica: %+v", stored)
	}
	if _, err := c.Subscribe(ctx, "ghost"); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("unknown member: %v, want ENOTFOUND", err)
	}
	// Lookup carries the voucher asked about and the scanned code to the hub, and the standing
	// back.
	_, st, err := c.Lookup(ctx, "m1", "v1", "scanned-code")
	if err != nil || st == nil || st.Voucher != lsync.VoucherUsed {
		t.Fatalf("lookup with a voucher: standing %+v, %v", st, err)
	}
	if h.mu.Lock(); h.qr != "scanned-code" {
		t.Errorf("the hub got the code %q, want the scanned one", h.qr)
	}
	h.mu.Unlock()
	if n, ok := st.Redeemed("", loyalty.PeriodDay); !ok || n != 2 {
		t.Errorf("standing redemptions today = %d, %v; want 2, true", n, ok)
	}
	if _, ok := st.Redeemed("coffee", loyalty.PeriodDay); ok {
		t.Error("a limit the hub did not count was found")
	}
	if !c.Status().Online {
		t.Error("a request error ended the session")
	}
}

func TestNegotiate(t *testing.T) {
	if v, err := lsync.Negotiate([]int{7, lsync.Version}); err != nil || v != lsync.Version {
		t.Errorf("Negotiate: %d, %v", v, err)
	}
	if _, err := lsync.Negotiate([]int{0, 99}); loyalty.ErrorCode(err) != loyalty.EVERSION {
		t.Errorf("no common version: %v, want EVERSION", err)
	}
}

// A push carries a sale's SKUs as they are: escaped for HTML, each &, < and > would take six
// bytes, and a sale the till approved could outgrow the hub's message limit.
func TestEncodeLeavesHTMLCharacters(t *testing.T) {
	d := loyalty.Delta{ID: "d1", Store: "s1", Member: "m1", Kind: loyalty.KindEarn, OccurredAt: time.UnixMilli(1).UTC(),
		Lines: []loyalty.Line{{SKU: "M&M<>", Qty: 1, Amount: 100}}}
	b, err := lsync.Encode(&lsync.Message{Type: lsync.TypePush, ID: 1, Push: &lsync.Push{Deltas: []loyalty.Delta{d}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"M&M<>"`) || strings.HasSuffix(string(b), "\n") {
		t.Fatalf("encoded push %s: want the SKU as it is and no trailing newline", b)
	}
	m, err := lsync.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Push.Deltas[0].Lines[0].SKU; got != "M&M<>" {
		t.Errorf("decoded SKU %q, want %q", got, "M&M<>")
	}
}

func TestDecode(t *testing.T) {
	for _, in := range []string{`{`, `{"type":"push"}`, `{"type":"teleport","push":{}}`, `[]`} {
		if _, err := lsync.Decode([]byte(in)); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("Decode(%s): %v, want EINVALID", in, err)
		}
	}
	m, err := lsync.Decode([]byte(`{"type":"pull","id":3,"pull":{"cursor":9}}`))
	if err != nil || m.Pull.Cursor != 9 || m.ID != 3 {
		t.Errorf("Decode pull: %+v, %v", m, err)
	}
}

// A hostile or broken hub's welcome cannot take the agent down: a heartbeat that overflows a
// duration (which made the client's ticker panic), or a hub clock so far off that every delta
// the till made with its offset would be invalid. The session goes on, with a bounded heartbeat
// and the offset measured before.
func TestClient_HostileWelcome(t *testing.T) {
	conn := newListConn(t, &lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: lsync.Version, Store: "s1",
		HubTime: 0, HeartbeatMillis: 10_000_000_000_000, MaxBatch: 10, MaxMessageBytes: 1 << 20}})
	c := lsync.NewClient("scripted://", "s1", "secret", listDialer{conn}, newAgentFake(0))
	c.Logger = quiet
	run(t, c)
	eventually(t, "the session with the hostile hub", func() bool { return c.Status().Online })
	if off := c.Status().ClockOffset; off != 0 {
		t.Errorf("clock offset %s taken from a hub clock at 1970", off)
	}
}

// One delta larger than the hub takes (its max_message_bytes) can never be sent: it is set aside
// as rejected (ETOOLARGE), kept for review, and the deltas behind it go on, in one session.
func TestClient_OversizeDeltaSetAside(t *testing.T) {
	h, a, c, d := setup(t, 3, "secret")
	d.srv.MaxMessageBytes = lsync.MinMessageBytes
	a.outbox[1].Delta.Reason = strings.Repeat("\x01", 12_000) // 72 KB as JSON: a control character is escaped as \u0001
	run(t, c)
	eventually(t, "the outbox drained", func() bool { n, _ := a.PendingCount(context.Background()); return n == 0 })
	a.mu.Lock()
	status := maps.Clone(a.status)
	a.mu.Unlock()
	if status["d002"] != lsync.StatusRejected+" "+loyalty.ETOOLARGE || status["d001"] != lsync.StatusApplied || status["d003"] != lsync.StatusApplied {
		t.Errorf("outcomes %v: want d002 rejected ETOOLARGE, the others applied", status)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if slices.Contains(h.calls, "push d002") {
		t.Error("the oversize delta was sent")
	}
	if st := c.Status(); st.Sessions != 1 {
		t.Errorf("%d sessions: the oversize delta ended one", st.Sessions)
	}
}
