package sync_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// unsubHub is a hub that takes members out of a store's scope.
type unsubHub struct {
	*hubFake
}

func (h unsubHub) Unsubscribe(ctx context.Context, store string, members []string) error {
	for _, m := range members {
		h.log("unsubscribe " + store + " " + m)
	}
	return nil
}

// An agent evicts members and unsubscribes them: the hub takes them out of the store's scope and
// says so, and the session goes on. Too many members in one message, or a hub that cannot take
// members out of a scope, fail that request only.
func TestClient_Unsubscribe(t *testing.T) {
	h, _, c, d := setup(t, 0, "secret")
	d.srv.Handler = unsubHub{h}
	run(t, c)
	ctx := context.Background()
	eventually(t, "online", func() bool { return c.Status().Online })
	if v := c.Status().Version; v != lsync.Version || v < 2 {
		t.Fatalf("negotiated version %d, want %d (unsubscribe needs 2)", v, lsync.Version)
	}
	if err := c.Unsubscribe(ctx, []string{"m1", "m2"}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	calls := slices.Clone(h.calls)
	h.mu.Unlock()
	if !slices.Contains(calls, "unsubscribe s1 m1") || !slices.Contains(calls, "unsubscribe s1 m2") {
		t.Fatalf("hub calls %v: want m1 and m2 unsubscribed for s1", calls)
	}
	var many []string
	for i := range 11 { // MaxBatch is 10
		many = append(many, fmt.Sprintf("m%d", i))
	}
	if err := c.Unsubscribe(ctx, many); loyalty.ErrorCode(err) != loyalty.ETOOLARGE {
		t.Errorf("11 members, max_batch 10: %v, want ETOOLARGE", err)
	}
	d.srv.Handler = h // the same hub, without Unsubscribe
	if err := c.Unsubscribe(ctx, []string{"m3"}); loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE {
		t.Errorf("a hub that cannot unsubscribe: %v, want EUNAVAILABLE", err)
	}
	if _, err := c.Subscribe(ctx, "m4"); err != nil {
		t.Errorf("the session did not go on after refused unsubscribes: %v", err)
	}
	if st := c.Status(); st.Sessions != 1 {
		t.Errorf("%d sessions, want 1: a refused unsubscribe ends no session", st.Sessions)
	}
}

// A hub of protocol version 1 never sees an unsubscribe, which it would take for a broken
// session: the agent does not send it, and says why.
func TestClient_UnsubscribeNotSentToAVersion1Hub(t *testing.T) {
	c, h := pipe()
	d := oneDialer{conn: make(chan lsync.Conn, 1)}
	d.conn <- c
	cl := lsync.NewClient("pipe://", "s1", "secret", d, newAgentFake(0))
	cl.Logger = quiet
	run(t, cl)
	hello := rvRead(t, h)
	if hello.Type != lsync.TypeHello || !slices.Contains(hello.Hello.Versions, 1) || !slices.Contains(hello.Hello.Versions, 2) {
		t.Fatalf("got %s %+v, want a hello offering versions 2 and 1", hello.Type, hello.Hello)
	}
	rvSend(t, h, &lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: 1, Store: "s1", HeartbeatMillis: 10_000}})
	eventually(t, "online", func() bool { return cl.Status().Online })
	if err := cl.Unsubscribe(context.Background(), []string{"m1"}); loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE {
		t.Fatalf("unsubscribe in a version 1 session: %v, want EUNAVAILABLE", err)
	}
	if m := rvRead(t, h); m.Type != lsync.TypePull {
		t.Fatalf("the hub got %s, want the session's first pull", m.Type)
	}
	go cl.Subscribe(context.Background(), "m9")
	if m := rvRead(t, h); m.Type != lsync.TypeSubscribe {
		t.Fatalf("the hub got %s after the first pull, want the subscribe sent after the refused unsubscribe", m.Type)
	}
}
