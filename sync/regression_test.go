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

// Finding: a new session for a store cancels the old one but does not wait for it; the old
// session's deferred Seen(Connected:false) lands after the new session's Seen(Connected:true).
func TestReconnectKeepsStoreConnected(t *testing.T) {
	ctx := context.Background()
	h := rvHub(t)
	_, tok, _ := h.CreateStore(ctx, "s1", "")
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	defer srv.Close()
	bad := 0
	const N = 50
	for i := 0; i < N; i++ {
		c, s := pipe()
		done := make(chan struct{})
		go func() { srv.Serve(ctx, s); close(done) }()
		rvSend(t, c, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: tok}})
		rvRead(t, c)
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
			st, _ := h.Stores(ctx)
			if !st[0].Health.Connected {
				bad++
			}
		}
		_ = done
	}
	t.Logf("%d of %d reconnects left the live store reported as disconnected (sessions=%d)", bad, N-1, srv.Sessions())
	if bad > 0 {
		t.Errorf("store with a live session shown as disconnected")
	}
}

// slowHub applies pushes slowly, as a hub whose single writer is queued behind other stores.
type slowHub struct {
	hubFake
	delay time.Duration
}

func (h *slowHub) Push(ctx context.Context, store string, ds []loyalty.Delta) (*lsync.Ack, error) {
	select {
	case <-time.After(h.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.hubFake.Push(ctx, store, ds)
}

// Finding: pongs are answered by the session goroutine after Handler.Push returns, and the idle
// timer races queued messages: a push slower than 3 heartbeats kills a live session on both sides.
func TestSlowPushKeepsSessionAlive(t *testing.T) {
	kills := 0
	const N = 5
	for i := 0; i < N; i++ {
		h := &slowHub{hubFake: hubFake{applied: map[string]bool{}, token: "secret"}, delay: 200 * time.Millisecond}
		srv := lsync.NewServer(h)
		srv.Logger = quiet
		srv.HeartbeatInterval = 50 * time.Millisecond // silence limit 150ms
		c, s := pipe()
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(context.Background(), s) }()
		rvSend(t, c, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: "secret"}})
		rvRead(t, c)
		rvSend(t, c, &lsync.Message{Type: lsync.TypePush, ID: 1, Push: &lsync.Push{Deltas: []loyalty.Delta{{ID: "d1"}}}})
		// The agent is alive and pings every 20ms while the hub works on the push.
		stop := make(chan struct{})
		var wg gosync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					b, _ := lsync.Encode(&lsync.Message{Type: lsync.TypePing, Ping: &lsync.Ping{}})
					c.Write(context.Background(), b)
				}
			}
		}()
		select {
		case err := <-errc:
			if err != nil && strings.Contains(err.Error(), "silent") {
				kills++
			}
		case <-time.After(600 * time.Millisecond):
		}
		close(stop)
		wg.Wait()
		srv.Close()
	}
	t.Logf("%d of %d live sessions were dropped as silent after one push slower than 3 heartbeats", kills, N)
	if kills > 0 {
		t.Errorf("live sessions dropped")
	}
}
