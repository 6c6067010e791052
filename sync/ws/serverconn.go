package ws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// serverConn is the hub's end of an agent's websocket. The hub holds one for every connected
// store, most of them idle, so it holds no goroutine of its own while nothing happens:
//
//   - reading happens in Read, on the caller's goroutine (the hub's session reader, which always
//     has a Read outstanding): pings and pongs are answered and heard there, and every Read
//     extends the read deadline, as every frame does;
//   - writes are queued, and a writer goroutine runs only while the queue holds something (and to
//     send what is left and the close frame when the connection ends); it takes its write buffer
//     from a pool shared by every connection and gives it back after each message;
//   - pings are a timer (time.AfterFunc) that writes a ping frame every ping interval.
//
// The limits are the client Conn's: a read limit, a silence deadline of 2.5 ping intervals, a
// deadline per write, and a peer that lets Queue messages wait is disconnected.
type serverConn struct {
	ws    *websocket.Conn
	opts  Options
	heard atomic.Int64 // unix nanoseconds of the last frame from the peer, pings and pongs included
	// interrupted is set for good once a Read's context is done: the read deadline that ends
	// that Read must not be extended again by a frame read at the same moment.
	interrupted atomic.Bool
	ping        *time.Timer

	mu      sync.Mutex
	queue   [][]byte // messages waiting for the writer, oldest first; nil when empty
	writing bool     // a writer goroutine runs (or has ended the connection)
	done    bool     // the connection is ending or ended
	err     error    // why
	wg      sync.WaitGroup
}

var (
	_ lsync.Conn      = (*serverConn)(nil)
	_ lsync.Hearer    = (*serverConn)(nil)
	_ lsync.Addresser = (*serverConn)(nil)
	_ lsync.Flusher   = (*serverConn)(nil)
)

// Writing implements lsync.Flusher: the writer goroutine runs.
func (c *serverConn) Writing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writing
}

// writeBuffers are the write buffers of every hub connection: a connection holds one only while
// it writes a message.
var writeBuffers sync.Pool

// serverReadBuffer is the size of a hub connection's read buffer, which it keeps while idle. A
// frame header or a small message fits; a larger message is read past it, straight into the
// message's own buffer.
const serverReadBuffer = 512

// aLongTimeAgo is a read deadline that has passed: it ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

func newServerConn(c *websocket.Conn, opts Options) *serverConn {
	opts = opts.withDefaults()
	conn := &serverConn{ws: c, opts: opts}
	conn.heard.Store(time.Now().UnixNano())
	c.SetReadLimit(opts.ReadLimit)
	c.SetPongHandler(func(string) error { conn.heardNow(); return nil })
	c.SetPingHandler(func(data string) error {
		conn.heardNow()
		err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(conn.opts.WriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	// Made stopped and then set, so that the ping it runs sees conn.ping.
	conn.ping = time.AfterFunc(time.Hour, conn.pingNow)
	conn.ping.Reset(opts.PingInterval)
	return conn
}

// SetReadLimit implements lsync.ReadLimiter. It is called between reads.
func (c *serverConn) SetReadLimit(bytes int64) {
	if bytes <= 0 {
		bytes = c.opts.ReadLimit
	}
	c.ws.SetReadLimit(bytes)
}

// LastHeard implements lsync.Hearer.
func (c *serverConn) LastHeard() time.Time { return time.Unix(0, c.heard.Load()) }

// RemoteAddr implements lsync.Addresser: the agent's address as the hub sees it (a proxy's
// behind one).
func (c *serverConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// heardNow records a frame from the peer and extends the read deadline.
func (c *serverConn) heardNow() {
	c.heard.Store(time.Now().UnixNano())
	c.extend()
}

// extend sets the read deadline to 2.5 ping intervals from now, unless a Read was interrupted.
func (c *serverConn) extend() {
	c.ws.SetReadDeadline(time.Now().Add(c.opts.PingInterval * 5 / 2))
	if c.interrupted.Load() { // interrupt ran meanwhile: its deadline must win
		c.ws.SetReadDeadline(aLongTimeAgo)
	}
}

// interrupt ends a blocked Read whose context is done. The connection reads nothing more: a
// websocket read cut in the middle cannot go on.
func (c *serverConn) interrupt() {
	c.interrupted.Store(true)
	c.ws.SetReadDeadline(aLongTimeAgo)
}

// Read implements lsync.Conn. It reads on the caller's goroutine; one Read at a time. Once a
// Read returned because its ctx was done, the connection can still be written and closed, but
// not read.
func (c *serverConn) Read(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, c.interrupt)
		defer stop()
	}
	c.extend()
	for {
		typ, b, err := c.ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if e := c.Err(); e != nil { // the connection had ended already, which ended the read
				return nil, e
			}
			err = readError(err)
			c.fail(err)
			return nil, err
		}
		c.heardNow()
		if typ == websocket.TextMessage {
			return b, nil
		}
	}
}

// Write implements lsync.Conn. It never waits: a full queue means the peer is not reading, and
// the connection is closed rather than waited on.
func (c *serverConn) Write(ctx context.Context, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return c.err
	}
	if len(c.queue) >= c.opts.Queue {
		err := fmt.Errorf("peer too slow: %d messages waiting", c.opts.Queue)
		c.failLocked(err)
		return err
	}
	c.queue = append(c.queue, b)
	c.startWriterLocked()
	return nil
}

// Err returns why the connection ended, or nil while it is open.
func (c *serverConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close implements lsync.Conn. Messages already queued are still sent (for at most a second)
// before the close frame; Close waits for that, and for a ping being sent. A Read blocked on
// another goroutine returns with the error.
func (c *serverConn) Close() error {
	c.fail(lsync.ErrClosed)
	c.wg.Wait()
	return nil
}

func (c *serverConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failLocked(err)
}

// failLocked ends the connection with err: the writer sends what is queued and the close frame,
// then closes the socket, which ends a blocked Read. c.mu is held.
func (c *serverConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
	}
	if !c.done {
		c.done = true
		c.ping.Stop()
		c.startWriterLocked()
	}
}

// startWriterLocked starts the writer unless it runs. c.mu is held.
func (c *serverConn) startWriterLocked() {
	if c.writing {
		return
	}
	c.writing = true
	c.wg.Add(1)
	go c.write()
}

// write sends the queued messages in order and ends when the queue is empty; once the
// connection ends, it flushes what is left, sends the close frame and closes the socket.
func (c *serverConn) write() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if c.done {
			queued := c.queue
			c.queue = nil
			c.mu.Unlock() // writing stays set: no writer starts again
			c.flush(queued)
			c.ws.Close()
			return
		}
		if len(c.queue) == 0 {
			c.queue = nil
			c.writing = false
			c.mu.Unlock()
			return
		}
		b := c.queue[0]
		c.queue[0], c.queue = nil, c.queue[1:]
		c.mu.Unlock()
		c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			c.fail(fmt.Errorf("write: %w", err))
		}
	}
}

// flush sends queued messages (such as an error frame explaining why the session ends) and a
// close frame, within one second in all: best effort, as the peer may already be gone.
func (c *serverConn) flush(queued [][]byte) {
	deadline := time.Now().Add(time.Second)
	c.ws.SetWriteDeadline(deadline)
	for _, b := range queued {
		if c.ws.WriteMessage(websocket.TextMessage, b) != nil {
			return
		}
	}
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
}

// pingNow sends a ping frame and sets the next one, on the timer's goroutine.
func (c *serverConn) pingNow() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1) // Close waits for a ping being written
	c.mu.Unlock()
	defer c.wg.Done()
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.opts.WriteTimeout)); err != nil {
		c.fail(fmt.Errorf("ping: %w", err))
		return
	}
	c.mu.Lock()
	if !c.done { // a stopped timer set again would keep the connection from being collected
		c.ping.Reset(c.opts.PingInterval)
	}
	c.mu.Unlock()
}
