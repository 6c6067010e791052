package sim

import (
	"bytes"
	"context"
	"fmt"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// wire is a session with the hub's real sync server, spoken message by message: what a store
// that writes the protocol itself sends. Hostile stores push their forgeries through it, and
// honest stores' late copies of a push arrive through it. The server is stepped by hand
// (sync.ServerStepper), so the hub sees exactly the bytes a websocket would carry.
type wire struct {
	ss   *lsync.ServerStepper
	box  *lsync.Mailbox
	next uint64
}

// dial opens a session for store: hello with its token, and the hub's welcome. The store must
// have no other session open: the server ends an older session of the same store and waits for
// it, which a stepped session only ends on close.
func (w *world) dial(ctx context.Context, store string) (*wire, error) {
	box := &lsync.Mailbox{}
	c := &wire{ss: w.server.Step(box), box: box}
	r, err := c.call(ctx, &lsync.Message{Type: lsync.TypeHello, Hello: &lsync.Hello{Versions: lsync.Versions, Store: store,
		Token: w.storeTokens[store], AgentVersion: "sim", SentAt: w.now.UnixMilli()}})
	if err != nil {
		c.close(ctx)
		return nil, fmt.Errorf("store %s: hello: %w", store, err)
	}
	if r.Type != lsync.TypeWelcome {
		c.close(ctx)
		return nil, fmt.Errorf("store %s: hello answered with %s", store, r.Type)
	}
	return c, nil
}

// call sends one message and returns the hub's one answer. An error means the hub ended the
// session.
func (c *wire) call(ctx context.Context, m *lsync.Message) (*lsync.Message, error) {
	if m.Type != lsync.TypeHello {
		c.next++
		m.ID = c.next
	}
	b, err := lsync.Encode(m)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, b)
}

// send delivers raw bytes and returns the hub's one answer.
func (c *wire) send(ctx context.Context, b []byte) (*lsync.Message, error) {
	if err := c.ss.Deliver(ctx, b); err != nil {
		return nil, err // the session ended; refusal reads what the store was told
	}
	out := c.box.Take()
	if len(out) != 1 {
		return nil, fmt.Errorf("the hub answered one message with %d", len(out))
	}
	r, err := lsync.Decode(out[0])
	if err != nil {
		return nil, fmt.Errorf("the hub's answer: %w", err)
	}
	if r.Type == lsync.TypeError {
		return nil, r.Error
	}
	return r, nil
}

// push pushes deltas and returns the hub's ack.
func (c *wire) push(ctx context.Context, ds []loyalty.Delta) (*lsync.Ack, error) {
	return c.pushBytes(ctx, ds, false)
}

// pushBytes pushes deltas. With raw, text that is not UTF-8 goes out as it is: Go's encoder
// writes \ufffd for each invalid byte, and a store writing its own JSON need not, so each
// becomes the byte 0xff again.
func (c *wire) pushBytes(ctx context.Context, ds []loyalty.Delta, raw bool) (*lsync.Ack, error) {
	c.next++
	b, err := lsync.Encode(&lsync.Message{Type: lsync.TypePush, ID: c.next, Push: &lsync.Push{Deltas: ds}})
	if err != nil {
		return nil, err
	}
	if raw {
		b = bytes.ReplaceAll(b, []byte(`\ufffd`), []byte{0xff})
	}
	r, err := c.send(ctx, b)
	if err != nil {
		return nil, err
	}
	if r.Type != lsync.TypeAck {
		return nil, fmt.Errorf("a push answered with %s", r.Type)
	}
	return r.Ack, nil
}

// pull asks for a page of changes.
func (c *wire) pull(ctx context.Context, p lsync.Pull) (*lsync.Changes, error) {
	r, err := c.call(ctx, &lsync.Message{Type: lsync.TypePull, Pull: &p})
	if err != nil {
		return nil, err
	}
	if r.Type != lsync.TypeChanges {
		return nil, fmt.Errorf("a pull answered with %s", r.Type)
	}
	return r.Changes, nil
}

// refusal returns the error message the hub sent the store when it ended the session.
func (c *wire) refusal() (*loyalty.Error, bool) {
	for _, b := range c.box.Take() {
		if m, err := lsync.Decode(b); err == nil && m.Type == lsync.TypeError {
			return m.Error, true
		}
	}
	return nil, false
}

// close ends the session, as a dropped connection does.
func (c *wire) close(ctx context.Context) { c.ss.Close(ctx) }
