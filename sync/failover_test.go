package sync_test

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// hubsDialer serves dials to several hubs by URL; a hub marked down refuses connections.
type hubsDialer struct {
	mu   gosync.Mutex
	srvs map[string]*lsync.Server
	down map[string]bool
	wg   gosync.WaitGroup
}

func (d *hubsDialer) Dial(ctx context.Context, url string) (lsync.Conn, error) {
	d.mu.Lock()
	srv, down := d.srvs[url], d.down[url]
	d.mu.Unlock()
	if srv == nil || down {
		return nil, errors.New("connection refused")
	}
	c, s := pipe()
	d.wg.Add(1)
	go func() { defer d.wg.Done(); srv.Serve(context.Background(), s) }()
	return c, nil
}

// TestClient_FailsOverToTheNextHub: an agent given two hubs (Client.URLs) connects to the first;
// when that hub dies it connects to the second at its next attempt, and pushes there what it
// sold meanwhile; when the second dies too and the first is back, it goes round to the first.
func TestClient_FailsOverToTheNextHub(t *testing.T) {
	h := &hubFake{applied: map[string]bool{}, token: "secret"}
	d := &hubsDialer{srvs: map[string]*lsync.Server{}, down: map[string]bool{}}
	for _, url := range []string{"pipe://a", "pipe://b"} {
		srv := lsync.NewServer(h) // two hub processes, one database
		srv.Logger = quiet
		d.srvs[url] = srv
	}
	t.Cleanup(func() {
		for _, srv := range d.srvs {
			srv.Close()
		}
		d.wg.Wait()
	})
	a := newAgentFake(3)
	c := lsync.NewClient("unused://", "s1", "secret", d, a)
	c.URLs = []string{"pipe://a", "pipe://b"}
	c.Logger = quiet
	c.Wait = func(context.Context, time.Duration, time.Duration) {} // reconnect at once: the test checks where, not when
	run(t, c)
	online := func(url string) func() bool {
		return func() bool { st := c.Status(); return st.Online && st.Hub == url }
	}
	eventually(t, "online through hub a", online("pipe://a"))
	eventually(t, "the outbox pushed to hub a", func() bool { n, _ := a.PendingCount(context.Background()); return n == 0 })

	// Hub a dies: its sessions end and it takes no more connections.
	d.mu.Lock()
	d.down["pipe://a"] = true
	d.mu.Unlock()
	d.srvs["pipe://a"].Close()
	eventually(t, "online through hub b", online("pipe://b"))
	a.mu.Lock() // sold while the agent moves
	for i := 4; i <= 5; i++ {
		a.outbox = append(a.outbox, lsync.Outgoing{Seq: int64(i), Delta: loyalty.Delta{ID: fmt.Sprintf("d%03d", i)}})
	}
	a.mu.Unlock()
	c.Kick()
	eventually(t, "the new sales pushed to hub b", func() bool { n, _ := a.PendingCount(context.Background()); return n == 0 })
	h.mu.Lock()
	applied := len(h.applied)
	h.mu.Unlock()
	if applied != 5 {
		t.Errorf("the hubs applied %d deltas, want 5", applied)
	}

	// Hub a comes back (a new process), hub b dies: round to a again.
	srv := lsync.NewServer(h)
	srv.Logger = quiet
	d.mu.Lock()
	d.srvs["pipe://a"], d.down["pipe://a"], d.down["pipe://b"] = srv, false, true
	d.mu.Unlock()
	d.srvs["pipe://b"].Close()
	eventually(t, "online through hub a again", online("pipe://a"))
	if st := c.Status(); st.Sessions < 3 {
		t.Errorf("%d sessions, want at least 3 (a, b, a)", st.Sessions)
	}
}
