package sync_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// listConn is a hub that sends the messages it is given, in order, and keeps what the client
// writes.
type listConn struct {
	msgs   chan []byte
	sent   chan []byte
	closed chan struct{}
}

func newListConn(t *testing.T, msgs ...*lsync.Message) *listConn {
	t.Helper()
	c := &listConn{msgs: make(chan []byte, len(msgs)), sent: make(chan []byte, 64), closed: make(chan struct{})}
	for _, m := range msgs {
		b, err := lsync.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		c.msgs <- b
	}
	return c
}

func (c *listConn) Read(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.msgs:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closed:
		return nil, lsync.ErrClosed
	}
}

func (c *listConn) Write(ctx context.Context, b []byte) error {
	select {
	case c.sent <- b:
	default:
	}
	return nil
}

func (c *listConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

type listDialer struct{ conn *listConn }

func (d listDialer) Dial(context.Context, string) (lsync.Conn, error) { return d.conn, nil }

// warnings is a log handler that hands every warning's message to a channel.
type warnings chan string

func (w warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w warnings) Handle(_ context.Context, r slog.Record) error {
	select {
	case w <- r.Message:
	default:
	}
	return nil
}
func (w warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w warnings) WithGroup(string) slog.Handler      { return w }

// One pong whose times are not a measurement (a hub clock of 1970, a sent_at not echoed) is
// ignored, as the welcome's hub time is: taken, it set a clock offset no delta may carry, and
// every sale at the till failed until the next pong.
func TestClient_HostilePong(t *testing.T) {
	now := time.Now().UnixMilli()
	conn := newListConn(t,
		&lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: lsync.Version, Store: "s1", HubTime: now, MaxBatch: 10}},
		&lsync.Message{Type: lsync.TypePong, Pong: &lsync.Pong{SentAt: now, HubTime: 0}},
		&lsync.Message{Type: lsync.TypePong, Pong: &lsync.Pong{SentAt: 0, HubTime: now}})
	c := lsync.NewClient("scripted://", "s1", "secret", listDialer{conn}, newAgentFake(0))
	warned := make(warnings, 16)
	c.Logger = slog.New(warned)
	run(t, c)
	for i := range 2 {
		select {
		case msg := <-warned:
			if !strings.Contains(msg, "pong") {
				t.Fatalf("warning %q, want one about the pong", msg)
			}
		case <-time.After(10 * time.Second): // a safety net: turns a hang into a failure
			t.Fatalf("pong %d was not refused", i+1)
		}
	}
	if off := c.Status().ClockOffset; off > time.Hour || off < -time.Hour {
		t.Errorf("clock offset %s after two hostile pongs; want the welcome's, near 0", off)
	}
}

// A welcome's max_message_bytes below what any hub may set is taken as that least figure: taken
// as it was (16 bytes), it set every change of the outbox aside as too large, for good.
func TestClient_TinyMaxMessageBytes(t *testing.T) {
	conn := newListConn(t, &lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: lsync.Version, Store: "s1",
		HubTime: time.Now().UnixMilli(), MaxBatch: 10, MaxMessageBytes: 16}})
	a := newAgentFake(3)
	c := lsync.NewClient("scripted://", "s1", "secret", listDialer{conn}, a)
	c.Logger = quiet
	run(t, c)
	for {
		var b []byte
		select {
		case b = <-conn.sent:
		case <-time.After(10 * time.Second): // a safety net: turns a hang into a failure
			a.mu.Lock()
			t.Fatalf("the outbox was never pushed; outcomes %v", a.status)
		}
		m, err := lsync.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == lsync.TypePush {
			if len(m.Push.Deltas) != 3 {
				t.Errorf("pushed %d deltas, want the outbox's 3", len(m.Push.Deltas))
			}
			break
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.status) != 0 {
		t.Errorf("outcomes %v before any ack: the agent set changes aside itself", a.status)
	}
}

// The agent's estimate of the hub's clock through a session (offsetSamples): a till whose clock
// was a quarter of an hour behind at the welcome, then set right, follows the first pong after,
// rather than dating its changes beyond claims.max_future until the welcome's measurement aged
// out; a pong with a slow round trip does not move the estimate the quick one made.
func TestClient_ClockOffsetThroughASession(t *testing.T) {
	enc := func(m *lsync.Message) []byte {
		b, err := lsync.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	conn := newListConn(t)
	conn.msgs = make(chan []byte, 8)
	conn.msgs <- enc(&lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: lsync.Version, Store: "s1",
		HubTime: time.Now().UnixMilli(), MaxBatch: 10}})
	var set atomic.Bool
	c := lsync.NewClient("scripted://", "s1", "secret", listDialer{conn}, newAgentFake(0))
	c.Now = func() time.Time {
		if set.Load() {
			return time.Now()
		}
		return time.Now().Add(-15 * time.Minute)
	}
	warned := make(warnings, 16)
	c.Logger = slog.New(warned)
	run(t, c)
	eventually(t, "the welcome", func() bool { return c.Status().Sessions > 0 })
	if off := c.Status().ClockOffset; off < 14*time.Minute {
		t.Fatalf("offset %s at the welcome; want about 15m", off)
	}
	set.Store(true)
	// pong sends a pong, then one that is no measurement (sent_at 0): its warning says the one
	// before it was handled.
	pong := func(sentAt, hubTime int64) {
		t.Helper()
		conn.msgs <- enc(&lsync.Message{Type: lsync.TypePong, Pong: &lsync.Pong{SentAt: sentAt, HubTime: hubTime}})
		conn.msgs <- enc(&lsync.Message{Type: lsync.TypePong, Pong: &lsync.Pong{SentAt: 0, HubTime: hubTime}})
		eventually(t, "the pong", func() bool {
			select {
			case <-warned:
				return true
			default:
				return false
			}
		})
	}
	now := time.Now().UnixMilli()
	pong(now-2, now)
	quick := c.Status().ClockOffset
	if quick > time.Minute || quick < -time.Minute {
		t.Fatalf("offset %s after the clock was set and a pong came; want about 0", quick)
	}
	now = time.Now().UnixMilli()
	pong(now-5000, now-2400) // a 5 s round trip; the hub's clock read 100 ms past its middle
	if off := c.Status().ClockOffset; off != quick {
		t.Errorf("offset %s after a slow pong; want the quick one's %s", off, quick)
	}
}
