package sync

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// The steppers run the client's and the server's session state machines by hand, on the
// caller's goroutine: the caller carries each message from one end to the other and says when a
// heartbeat is due. Run and Serve drive the same machines from the network and from timers; the
// deterministic simulator (package sim) drives them through these, so that it checks the real
// protocol (hello, the whole outbox before the first pull, flushed pulls, acks, pages) with a
// virtual clock and a seeded order of events.

// ClientStepper is one client session run by hand.
type ClientStepper struct {
	s        *clientSession
	sent     time.Time // when the hello was sent, for the clock offset
	welcomed bool
	closed   bool
}

// Step opens a session on conn: it sends hello. Deliver gives it each message from the hub.
func (c *Client) Step(ctx context.Context, conn Conn) (*ClientStepper, error) {
	s := &clientSession{Client: c, conn: conn, calls: make(map[uint64]*call), batchSize: c.BatchSize, maxBytes: 1 << 20}
	sent, err := s.hello(ctx)
	if err != nil {
		return nil, err
	}
	return &ClientStepper{s: s, sent: sent}, nil
}

// Deliver handles one message from the hub: first the welcome (the session then pushes its
// outbox, and pulls once it is all sent), then any other. An error ends the session: Close it.
func (st *ClientStepper) Deliver(ctx context.Context, b []byte) error {
	if st.closed {
		return ErrClosed
	}
	if !st.welcomed {
		if _, err := st.s.welcome(b, st.sent); err != nil {
			return err
		}
		st.welcomed = true
		return st.s.start(ctx)
	}
	return st.s.handle(ctx, b)
}

// Kick pushes outbox deltas not sent yet, as Run does when the agent says it wrote some.
func (st *ClientStepper) Kick(ctx context.Context) error {
	if !st.welcomed || st.closed {
		return nil
	}
	return st.s.pushMore(ctx)
}

// Heartbeat pings the hub and pulls, as Run does at every heartbeat.
func (st *ClientStepper) Heartbeat(ctx context.Context) error {
	if !st.welcomed || st.closed {
		return nil
	}
	return st.s.heartbeat(ctx)
}

// Close ends the session: the client is offline and calls waiting for the hub fail. It is safe to
// call more than once.
func (st *ClientStepper) Close() {
	if st.closed {
		return
	}
	st.closed = true
	st.s.conn.Close()
	st.s.end()
	st.s.update(func(s *Status) { s.Online = false })
}

// ServerStepper is one hub-side session run by hand.
type ServerStepper struct {
	s      *Server
	conn   Conn
	ss     *serverSession
	owned  *Session // claimed from a SessionOwner Handler, released at Close
	closed bool
}

// Step starts a hub-side session on conn. Deliver gives it each message from the agent.
func (s *Server) Step(conn Conn) *ServerStepper {
	return &ServerStepper{s: s, conn: conn}
}

// Store returns the session's store, once its hello was accepted.
func (st *ServerStepper) Store() string {
	if st.ss == nil {
		return ""
	}
	return st.ss.store
}

// Deliver handles one message from the agent: first the hello, then any other. An error ends the
// session (the agent was told why, unless the reason is internal): Close it.
func (st *ServerStepper) Deliver(ctx context.Context, b []byte) error {
	if st.closed {
		return ErrClosed
	}
	if st.ss == nil {
		store, token, version, err := st.s.hello(ctx, st.conn, b)
		if err != nil {
			st.s.sendError(ctx, st.conn, 0, err)
			return fmt.Errorf("handshake: %w", err)
		}
		sctx, cancel := context.WithCancelCause(ctx)
		st.ss = &serverSession{s: st.s, conn: st.conn, store: store, token: token, remote: remoteAddr(st.conn), ctx: sctx, cancel: cancel, done: make(chan struct{})}
		st.s.register(st.ss)
		if st.owned, err = st.s.claim(ctx, st.ss); err != nil {
			return st.s.ended(ctx, st.conn, fmt.Errorf("claim the store's session: %w", err))
		}
		st.s.seen(ctx, store, Health{Connected: true, Version: version})
		st.s.Logger.Info("agent connected", slog.String("store", store), slog.Int("version", version))
		return nil
	}
	if err := st.s.handle(ctx, st.conn, st.ss.store, b); err != nil {
		return st.s.ended(ctx, st.conn, err)
	}
	return nil
}

// Close ends the session as Serve does when its connection ends. It is safe to call more than once.
func (st *ServerStepper) Close(ctx context.Context) {
	if st.closed {
		return
	}
	st.closed = true
	st.conn.Close()
	if st.ss != nil {
		st.ss.cancel(nil)
		st.s.seen(ctx, st.ss.store, Health{Connected: false})
		st.s.release(context.WithoutCancel(ctx), st.owned)
		st.s.unregister(st.ss)
		close(st.ss.done)
	}
}

// Mailbox is a Conn for steppers: what a session writes waits in the mailbox until the caller
// takes it and delivers it to the other end (or drops it, to cut the link). Steppers never read.
type Mailbox struct {
	out    [][]byte
	closed bool
}

// Read implements Conn; a stepper's messages are delivered to it, not read.
func (m *Mailbox) Read(ctx context.Context) ([]byte, error) { return nil, ErrClosed }

// Write implements Conn: the message waits for Take.
func (m *Mailbox) Write(ctx context.Context, b []byte) error {
	if m.closed {
		return ErrClosed
	}
	m.out = append(m.out, append([]byte(nil), b...))
	return nil
}

// Close implements Conn: later writes fail.
func (m *Mailbox) Close() error {
	m.closed = true
	return nil
}

// Take returns the messages written since the last Take, oldest first.
func (m *Mailbox) Take() [][]byte {
	out := m.out
	m.out = nil
	return out
}
