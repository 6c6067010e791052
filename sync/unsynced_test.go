package sync_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// unsyncedAgent is an agent that counts its outbox for its pings.
type unsyncedAgent struct {
	*agentFake
	u lsync.Unsynced
}

func (a *unsyncedAgent) Unsynced(context.Context) (lsync.Unsynced, error) { return a.u, nil }

// seenHub is a hub that passes on the health its pings carry.
type seenHub struct {
	*hubFake
	seen chan lsync.Health
}

func (h *seenHub) Seen(ctx context.Context, store string, s lsync.Health) error {
	if s.Unsynced != nil {
		select {
		case h.seen <- s:
		default:
		}
	}
	return nil
}

// An agent whose handler counts its outbox sends the count with its pings, and the hub's
// handler receives it with the store's health.
func TestPing_CarriesUnsynced(t *testing.T) {
	h := &seenHub{hubFake: &hubFake{applied: map[string]bool{}, token: "secret"}, seen: make(chan lsync.Health, 1)}
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	srv.HeartbeatInterval = 10 * time.Millisecond // pings come often; the test waits for one, not for time
	want := lsync.Unsynced{Deltas: 3, PointsEarned: 40, PointsRedeemed: 150, Budgets: map[string]int64{"coffees": 2}, OldestAt: 1767225600000}
	a := &unsyncedAgent{agentFake: newAgentFake(0), u: want}
	d := &pipeDialer{srv: srv}
	c := lsync.NewClient("pipe://", "s1", "secret", d, a)
	c.Logger, c.MinBackoff, c.MaxBackoff = quiet, time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { srv.Close(); d.wg.Wait() })
	run(t, c)
	// The first is the report at the session's start (before the outbox is pushed); the second
	// can only be a heartbeat's.
	for _, which := range []string{"the session's start", "a heartbeat"} {
		select {
		case got := <-h.seen:
			u := got.Unsynced
			if u.Deltas != want.Deltas || u.PointsEarned != want.PointsEarned || u.PointsRedeemed != want.PointsRedeemed ||
				u.OldestAt != want.OldestAt || !maps.Equal(u.Budgets, want.Budgets) {
				t.Errorf("%s told the hub %+v, want %+v", which, *u, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no ping with the outbox's count from %s reached the hub", which)
		}
	}
}

// A ping from an agent that does not count its outbox (an older one) decodes without a count;
// one that does keeps it through encoding.
func TestPing_UnsyncedIsOptional(t *testing.T) {
	m, err := lsync.Decode([]byte(`{"type":"ping","id":4,"ping":{"sent_at":1,"clock_offset_ms":2,"outbox":3}}`))
	if err != nil || m.Ping.Unsynced != nil || m.Ping.Outbox != 3 {
		t.Fatalf("an older agent's ping: %+v, %v", m.Ping, err)
	}
	b, err := lsync.Encode(&lsync.Message{Type: lsync.TypePing, ID: 5, Ping: &lsync.Ping{Outbox: 1, Unsynced: &lsync.Unsynced{Deltas: 1, PointsEarned: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err = lsync.Decode(b); err != nil || m.Ping.Unsynced == nil || m.Ping.Unsynced.PointsEarned != 7 {
		t.Fatalf("a ping with a count, decoded: %+v, %v", m.Ping, err)
	}
}

// orderHub records, in the order the session calls it, the pushes and the pings that carry an
// outbox's count.
type orderHub struct {
	*hubFake
}

func (h *orderHub) Seen(ctx context.Context, store string, s lsync.Health) error {
	if s.Unsynced != nil {
		h.log("unsynced " + strconv.FormatInt(s.Unsynced.Deltas, 10))
	}
	return nil
}

// At a session's start an agent that counts its outbox tells the hub what it holds before it
// pushes any of it, so that a store's backlog shows while a long catch-up is pushed.
func TestSession_ReportsBacklogBeforePushing(t *testing.T) {
	h := &orderHub{hubFake: &hubFake{applied: map[string]bool{}, token: "secret"}}
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	a := &unsyncedAgent{agentFake: newAgentFake(3), u: lsync.Unsynced{Deltas: 3, PointsEarned: 12}}
	d := &pipeDialer{srv: srv}
	c := lsync.NewClient("pipe://", "s1", "secret", d, a)
	c.Logger, c.MinBackoff, c.MaxBackoff = quiet, time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { srv.Close(); d.wg.Wait() })
	run(t, c)
	eventually(t, "the outbox pushed", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.applied) == 3
	})
	h.mu.Lock()
	calls := slices.Clone(h.calls)
	h.mu.Unlock()
	if len(calls) < 4 || calls[0] != "unsynced 3" || !strings.HasPrefix(calls[1], "push ") {
		t.Errorf("calls %q; want the count of 3 first, then the pushes", calls)
	}
}
