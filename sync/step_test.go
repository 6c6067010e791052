package sync_test

import (
	"context"
	"fmt"
	"testing"

	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// stepPair opens a stepped session between a client and a server, with their mailboxes.
func stepPair(t *testing.T, outbox int, token string) (*hubFake, *agentFake, *lsync.Client, *lsync.ClientStepper, *lsync.ServerStepper, *lsync.Mailbox, *lsync.Mailbox) {
	t.Helper()
	h := &hubFake{applied: map[string]bool{}, token: "secret"}
	srv := lsync.NewServer(h)
	srv.Logger, srv.MaxBatch = quiet, 10
	a := newAgentFake(outbox)
	c := lsync.NewClient("step://", "s1", token, nil, a)
	c.Logger = quiet
	toHub, toAgent := &lsync.Mailbox{}, &lsync.Mailbox{}
	cs, err := c.Step(context.Background(), toHub)
	if err != nil {
		t.Fatal(err)
	}
	return h, a, c, cs, srv.Step(toAgent), toHub, toAgent
}

// exchange carries messages both ways until neither side has anything to say.
func exchange(t *testing.T, cs *lsync.ClientStepper, ss *lsync.ServerStepper, toHub, toAgent *lsync.Mailbox) error {
	t.Helper()
	ctx := context.Background()
	for {
		up, down := toHub.Take(), toAgent.Take()
		if len(up) == 0 && len(down) == 0 {
			return nil
		}
		for _, b := range up {
			if err := ss.Deliver(ctx, b); err != nil {
				return err
			}
		}
		for _, b := range down {
			if err := cs.Deliver(ctx, b); err != nil {
				return err
			}
		}
	}
}

// TestStep_SameProtocolAsRun: a stepped session follows the protocol Run and Serve follow: the
// whole outbox (more than the push window holds) goes out in order before the first pull, and
// every delta leaves the outbox once acknowledged.
func TestStep_SameProtocolAsRun(t *testing.T) {
	h, a, c, cs, ss, toHub, toAgent := stepPair(t, 37, "secret")
	if err := exchange(t, cs, ss, toHub, toAgent); err != nil {
		t.Fatal(err)
	}
	if !c.Status().Online || ss.Store() != "s1" {
		t.Fatalf("online %v, store %q: want a session", c.Status().Online, ss.Store())
	}
	if n, _ := a.PendingCount(context.Background()); n != 0 {
		t.Fatalf("%d deltas left in the outbox", n)
	}
	if len(h.calls) != 38 {
		t.Fatalf("hub calls %v: want 37 pushes and a pull", h.calls)
	}
	for i, call := range h.calls[:37] {
		if want := fmt.Sprintf("push d%03d", i+1); call != want {
			t.Fatalf("call %d = %q, want %q", i, call, want)
		}
	}
	if h.calls[37] != "pull 0" {
		t.Fatalf("call 37 = %q, want the first pull", h.calls[37])
	}
	// A heartbeat pings and pulls from the cursor the first pull reached.
	if err := cs.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := exchange(t, cs, ss, toHub, toAgent); err != nil {
		t.Fatal(err)
	}
	if last := h.calls[len(h.calls)-1]; last != "pull 37" {
		t.Fatalf("after a heartbeat the hub saw %q, want pull 37", last)
	}
	cs.Close()
	ss.Close(context.Background())
	if c.Status().Online {
		t.Fatal("still online after Close")
	}
}

// TestStep_CutLinkRedelivers: messages lost when the link is cut leave the deltas in the outbox;
// the next session pushes them again and the hub acknowledges them as duplicates.
func TestStep_CutLinkRedelivers(t *testing.T) {
	h, a, c, cs, ss, toHub, toAgent := stepPair(t, 5, "secret")
	ctx := context.Background()
	for _, b := range toHub.Take() { // hello
		if err := ss.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range toAgent.Take() { // welcome: the client pushes
		if err := cs.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range toHub.Take() { // the hub applies the pushes...
		if err := ss.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	toAgent.Take() // ...and the acks are lost with the link
	cs.Close()
	ss.Close(ctx)
	if n, _ := a.PendingCount(ctx); n != 5 {
		t.Fatalf("%d pending after the cut, want 5", n)
	}
	toHub, toAgent = &lsync.Mailbox{}, &lsync.Mailbox{}
	cs2, err := c.Step(ctx, toHub)
	if err != nil {
		t.Fatal(err)
	}
	ss2 := lsync.NewServer(h).Step(toAgent)
	if err := exchange(t, cs2, ss2, toHub, toAgent); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.PendingCount(ctx); n != 0 {
		t.Fatalf("%d pending after the second session", n)
	}
	if got := c.Status().Duplicates; got != 5 {
		t.Fatalf("%d duplicates acknowledged, want 5", got)
	}
}

// TestStep_WrongTokenIsRefused: the server stepper refuses a bad hello and tells the client why.
func TestStep_WrongTokenIsRefused(t *testing.T) {
	_, _, c, cs, ss, toHub, toAgent := stepPair(t, 1, "wrong")
	err := exchange(t, cs, ss, toHub, toAgent)
	if err == nil {
		t.Fatal("a wrong token was accepted")
	}
	if down := toAgent.Take(); len(down) != 1 {
		t.Fatalf("%d messages to the agent, want the error", len(down))
	} else if cerr := cs.Deliver(context.Background(), down[0]); !lsync.IsRefusal(cerr) {
		t.Fatalf("client got %v, want a refusal", cerr)
	}
	if c.Status().Online {
		t.Fatal("online after a refusal")
	}
}

// TestStep_EpochBeforeAnything: the welcome names the hub's epoch, and the agent is told it
// before any ack or change reaches it (so a restored hub's epoch can put deltas back in the
// outbox for this very session).
func TestStep_EpochBeforeAnything(t *testing.T) {
	h, a, _, cs, ss, toHub, toAgent := stepPair(t, 3, "secret")
	h.epoch = 42
	if err := exchange(t, cs, ss, toHub, toAgent); err != nil {
		t.Fatal(err)
	}
	if len(a.epochs) != 1 || a.epochs[0] != 42 {
		t.Fatalf("the agent was told epochs %v, want [42]", a.epochs)
	}
	if len(h.calls) == 0 || h.calls[0] != "push d001" {
		t.Fatalf("hub calls %v", h.calls)
	}
}
