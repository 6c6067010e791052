package sync_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// pushGatedHub holds its first Push until released, and records the size of every push.
type pushGatedHub struct {
	*hubFake
	first gate
	sizes chan int
}

func (h *pushGatedHub) Push(ctx context.Context, store string, ds []loyalty.Delta) (*lsync.Ack, error) {
	h.sizes <- len(ds)
	if len(h.sizes) == 1 {
		h.first.pass(ctx)
	}
	return h.hubFake.Push(ctx, store, ds)
}

// add puts n more deltas in the outbox, as a till's sales do, each followed by a Kick.
func (a *agentFake) add(c *lsync.Client, n int) {
	for range n {
		a.mu.Lock()
		seq := int64(len(a.outbox) + 1)
		a.outbox = append(a.outbox, lsync.Outgoing{Seq: seq, Delta: loyalty.Delta{ID: fmt.Sprintf("d%03d", seq)}})
		a.mu.Unlock()
		c.Kick()
	}
}

// TestClient_PushDelayCoalescesWhileAPushIsInFlight: with a PushDelay, sales made while a push
// waits for its ack go in one push once that ack arrives, not one push each, and without waiting
// for the delay (an hour here, so only the ack can have sent them).
func TestClient_PushDelayCoalescesWhileAPushIsInFlight(t *testing.T) {
	h := &pushGatedHub{hubFake: newHubFake(), first: newGate(), sizes: make(chan int, 100)}
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	a := newAgentFake(1) // pushed as the session starts
	d := &pipeDialer{srv: srv}
	c := lsync.NewClient("pipe://", "s1", "secret", d, a)
	c.Logger, c.PushDelay = quiet, time.Hour
	t.Cleanup(func() { srv.Close(); d.wg.Wait() })
	run(t, c)

	h.first.wait(t, "the first push")
	a.add(c, 5) // while the first push waits for its ack
	close(h.first.release)
	eventually(t, "the outbox drained", func() bool { n, _ := a.PendingCount(context.Background()); return n == 0 })
	close(h.sizes)
	var sizes []int
	for n := range h.sizes {
		sizes = append(sizes, n)
	}
	if fmt.Sprint(sizes) != "[1 5]" {
		t.Errorf("pushes of %v deltas, want [1 5]: the five sales made during the first push go together after its ack", sizes)
	}
}

// TestClient_PushDelayPushesAfterTheDelay: a sale made while nothing is in flight is pushed once
// the delay has passed, with the sales made meanwhile.
func TestClient_PushDelayPushesAfterTheDelay(t *testing.T) {
	h, a, c, _ := setup(t, 0, "secret")
	c.PushDelay = time.Millisecond
	run(t, c)
	eventually(t, "the session's first pull", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.calls) > 0
	})
	a.add(c, 3)
	eventually(t, "the three sales acknowledged", func() bool { n, _ := a.PendingCount(context.Background()); return n == 0 })
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.applied) != 3 {
		t.Errorf("the hub has %d deltas, want 3", len(h.applied))
	}
}
