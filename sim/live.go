package sim

import (
	"context"
	"fmt"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// liveSession is a store's sync session kept open, as a connected agent keeps it: the store
// pushes and pulls at every heartbeat, and the hub tells the session's pulls apart from another
// session's (a lease reclaim is confirmed in the session that told it). The simulator carries
// every message from one end to the other at once, without faults, and says when a heartbeat is
// due.
type liveSession struct {
	cs             *lsync.ClientStepper
	ss             *lsync.ServerStepper
	toHub, toAgent *lsync.Mailbox
	next           uint64 // ids of the subscribe messages the simulator sends itself
}

// goLive opens a live session for s (its link comes up): hello and welcome, the whole outbox,
// then pulls until the change feed has nothing more.
func (w *world) goLive(ctx context.Context, s *store) error {
	c := lsync.NewClient("sim://"+s.id, s.id, w.storeTokens[s.id], nil, s.st)
	c.Logger, c.Now, c.AgentVersion = quiet, w.clock, "sim"
	c.Faults.BeforeAck = func(ack *lsync.Ack) error {
		w.checkAck(s, ack, false)
		return nil
	}
	l := &liveSession{toHub: &lsync.Mailbox{}, toAgent: &lsync.Mailbox{}}
	cs, err := c.Step(ctx, l.toHub)
	if err != nil {
		return err
	}
	l.cs, l.ss = cs, w.server.Step(l.toAgent)
	s.live, s.link = l, true
	return w.pump(ctx, s)
}

// disconnect ends s's live session: its link goes down.
func (w *world) disconnect(ctx context.Context, s *store) {
	s.link = false
	if s.live == nil {
		return
	}
	s.live.cs.Close()
	s.live.ss.Close(ctx)
	s.live = nil
}

// heartbeat pushes what s's outbox holds and pulls, as a connected agent does at every
// heartbeat (and when it asks the hub for a refill: agent.Syncer.Refresh).
func (w *world) heartbeat(ctx context.Context, s *store) error {
	if s.live == nil {
		return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
	}
	if err := s.live.cs.Kick(ctx); err != nil {
		return err
	}
	if err := s.live.cs.Heartbeat(ctx); err != nil {
		return err
	}
	return w.pump(ctx, s)
}

// pump carries messages both ways until neither end has anything more to say.
func (w *world) pump(ctx context.Context, s *store) error {
	l := s.live
	for {
		up := l.toHub.Take()
		for _, b := range up {
			if err := l.ss.Deliver(ctx, b); err != nil {
				return fmt.Errorf("store %s: the hub ended a live session: %w", s.id, err)
			}
		}
		down := l.toAgent.Take()
		if len(up) == 0 && len(down) == 0 {
			return nil
		}
		for _, b := range down {
			if err := l.cs.Deliver(ctx, b); err != nil {
				return fmt.Errorf("store %s: the agent ended a live session: %w", s.id, err)
			}
		}
	}
}

// liveSubscribe asks the hub for a member through s's live session, as the sync client's
// Subscribe does: a new session would replace the live one at the hub.
func (w *world) liveSubscribe(ctx context.Context, s *store, req *lsync.Subscribe) (*loyalty.Member, *lsync.Standing, error) {
	l := s.live
	if err := w.pump(ctx, s); err != nil {
		return nil, nil, err
	}
	l.next++
	id := 1<<62 + l.next // apart from the client's own message ids
	b, err := lsync.Encode(&lsync.Message{Type: lsync.TypeSubscribe, ID: id, Subscribe: req})
	if err != nil {
		return nil, nil, err
	}
	if err := l.ss.Deliver(ctx, b); err != nil {
		return nil, nil, fmt.Errorf("store %s: the hub ended a live session on subscribe: %w", s.id, err)
	}
	var got *loyalty.Member
	var standing *lsync.Standing
	var refused error
	for _, b := range l.toAgent.Take() {
		if m, err := lsync.Decode(b); err == nil && m.ID == id {
			if m.Type == lsync.TypeMember {
				got, standing = m.Member, m.Standing
			} else if m.Type == lsync.TypeError {
				refused = m.Error
			}
			continue
		}
		if err := l.cs.Deliver(ctx, b); err != nil {
			return nil, nil, err
		}
	}
	if refused != nil {
		return nil, nil, refused
	}
	if got == nil {
		return nil, nil, fmt.Errorf("store %s: a subscribe was not answered", s.id)
	}
	return got, standing, s.st.ApplyMember(ctx, got)
}
