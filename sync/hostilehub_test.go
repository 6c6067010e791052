package sync_test

import (
	"context"
	"log/slog"
	"strings"
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
