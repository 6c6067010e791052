package sync

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// Conn is one message-oriented connection between an agent and the hub. Implementations
// (sync/ws) enforce a read limit and deadlines, and disconnect a peer that stops reading. Read
// is called from one goroutine at a time; Write and Close from any.
type Conn interface {
	// Read returns the next message. It blocks until a message arrives, the connection ends
	// (an error), or ctx is done.
	Read(ctx context.Context) ([]byte, error)
	// Write queues a message for sending in order. It returns an error once the connection is
	// closed or if the peer is too slow to keep up.
	Write(ctx context.Context, msg []byte) error
	// Close ends the connection and waits for its goroutines. It is safe to call more than once.
	Close() error
}

// Dialer opens a client connection to the hub.
type Dialer interface {
	Dial(ctx context.Context, url string) (Conn, error)
}

// ErrClosed is returned by a Conn used after Close.
var ErrClosed = errors.New("connection closed")

// Hearer is implemented by a Conn that knows when it last heard from its peer, counting
// transport-level pings and pongs: a peer busy with a long request still answers those.
type Hearer interface {
	LastHeard() time.Time
}

// Flusher is implemented by a Conn that writes in the background: Writing reports whether it
// still has messages to send (Server.Busy).
type Flusher interface {
	Writing() bool
}

// ReadLimiter is implemented by a Conn whose largest message can be changed between reads (0:
// back to the Conn's own limit): the hub reads a session's hello under MaxHelloBytes, and its
// messages after the welcome under the Conn's own limit (sync.max_message_bytes), so that a peer
// not yet authenticated cannot make it read, hold and answer a message of the full size.
type ReadLimiter interface {
	SetReadLimit(bytes int64)
}

// MaxHelloBytes is the largest hello a hub reads: a real one is a few hundred bytes.
const MaxHelloBytes = 16 << 10

// Addresser is implemented by a Conn that knows its peer's network address. The hub names it in
// its logs and tells a store whose session another connection took over where that one came from.
type Addresser interface {
	RemoteAddr() net.Addr
}

// remoteAddr returns conn's peer address, or "an unknown address".
func remoteAddr(conn Conn) string {
	if a, ok := conn.(Addresser); ok {
		if addr := a.RemoteAddr(); addr != nil {
			return addr.String()
		}
	}
	return "an unknown address"
}

// lastHeard returns when the peer was last heard from.
func lastHeard(conn Conn, rd *reader) time.Time { return heardAfter(conn, rd.last.Load()) }

// heardAfter returns when the peer was last heard from: at unix nanoseconds last (its last
// message), or later if conn heard a frame since.
func heardAfter(conn Conn, last int64) time.Time {
	t := time.Unix(0, last)
	if h, ok := conn.(Hearer); ok {
		if ht := h.LastHeard(); ht.After(t) {
			t = ht
		}
	}
	return t
}

// reader pumps conn.Read into a channel so that a session can select on messages, timers and
// signals at once. It is owned by the session that starts it: the session closes the Conn (which
// ends Read) and then waits on done.
type reader struct {
	msgs chan []byte
	err  error // set before msgs is closed
	done chan struct{}
	last atomic.Int64 // unix nanoseconds of the last message read
}

func startReader(ctx context.Context, conn Conn) *reader {
	r := &reader{msgs: make(chan []byte), done: make(chan struct{})}
	r.last.Store(time.Now().UnixNano())
	go func() {
		defer close(r.done)
		defer close(r.msgs)
		for {
			b, err := conn.Read(ctx)
			if err != nil {
				r.err = err
				return
			}
			r.last.Store(time.Now().UnixNano())
			select {
			case r.msgs <- b:
			case <-ctx.Done():
				r.err = ctx.Err()
				return
			}
		}
	}()
	return r
}
