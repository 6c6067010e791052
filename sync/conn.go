package sync

import (
	"context"
	"errors"
)

// Conn is one message-oriented connection between an agent and the hub. Implementations
// (sync/ws) own a reader and a writer goroutine, enforce a read limit and deadlines, and
// disconnect a peer that stops reading.
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

// reader pumps conn.Read into a channel so that a session can select on messages, timers and
// signals at once. It is owned by the session that starts it: the session closes the Conn (which
// ends Read) and then waits on done.
type reader struct {
	msgs chan []byte
	err  error // set before msgs is closed
	done chan struct{}
}

func startReader(ctx context.Context, conn Conn) *reader {
	r := &reader{msgs: make(chan []byte), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer close(r.msgs)
		for {
			b, err := conn.Read(ctx)
			if err != nil {
				r.err = err
				return
			}
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
