// Package ws implements the sync protocol's Conn over gorilla websockets.
//
// Every connection enforces a read limit (an oversized message ends the connection with close
// code 1009) and a read deadline that pongs and messages extend; it sends pings and gives every
// write a deadline; every send goes through a queue, and a peer that stops reading fills it and
// is disconnected rather than waited on.
//
// The agent's connection (Dialer) has one reader goroutine and one writer goroutine: it answers
// the hub's pings while its session is busy. The hub's (Upgrader) holds thousands of mostly idle
// connections and no goroutine of its own while idle: it reads in Read, on the hub session's
// reader goroutine; its writer runs only while messages are queued; its pings are a timer; and it
// keeps a 512-byte read buffer, taking a write buffer from a shared pool only while it writes
// (serverconn.go).
package ws

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Defaults for Options.
const (
	DefaultReadLimit    = 1 << 20
	DefaultPingInterval = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultQueue        = 64
)

// Options tunes a connection. The zero value means the defaults.
type Options struct {
	ReadLimit    int64         // largest message accepted, in bytes
	PingInterval time.Duration // websocket pings; the peer is dropped after 2.5 intervals of silence
	WriteTimeout time.Duration // per write
	Queue        int           // messages waiting to be written before the peer counts as too slow
}

func (o Options) withDefaults() Options {
	if o.ReadLimit <= 0 {
		o.ReadLimit = DefaultReadLimit
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	return o
}

// Conn is a websocket connection carrying sync messages.
type Conn struct {
	ws   *websocket.Conn
	opts Options

	in   chan []byte
	out  chan []byte
	done chan struct{}
	wg   sync.WaitGroup

	once  sync.Once
	mu    sync.Mutex
	err   error
	heard atomic.Int64 // unix nanoseconds of the last frame from the peer, pings and pongs included
}

// LastHeard implements lsync.Hearer: a busy peer's transport still answers pings.
func (c *Conn) LastHeard() time.Time { return time.Unix(0, c.heard.Load()) }

// RemoteAddr implements lsync.Addresser: the peer's address (at the hub, the agent's as the hub
// sees it, which is a proxy's behind one).
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

var (
	_ lsync.Conn      = (*Conn)(nil)
	_ lsync.Hearer    = (*Conn)(nil)
	_ lsync.Addresser = (*Conn)(nil)
)

func newConn(c *websocket.Conn, opts Options) *Conn {
	opts = opts.withDefaults()
	conn := &Conn{ws: c, opts: opts, in: make(chan []byte, 16), out: make(chan []byte, opts.Queue), done: make(chan struct{})}
	c.SetReadLimit(opts.ReadLimit)
	conn.wg.Add(2)
	go conn.readLoop()
	go conn.writeLoop()
	return conn
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.once.Do(func() { close(c.done) })
}

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) readLoop() {
	defer c.wg.Done()
	silence := c.opts.PingInterval * 5 / 2
	heard := func() {
		c.heard.Store(time.Now().UnixNano())
		c.ws.SetReadDeadline(time.Now().Add(silence))
	}
	heard()
	c.ws.SetPongHandler(func(string) error { heard(); return nil })
	c.ws.SetPingHandler(func(data string) error {
		heard()
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.opts.WriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		typ, b, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(readError(err))
			return
		}
		heard()
		if typ != websocket.TextMessage {
			continue
		}
		select {
		case c.in <- b:
		case <-c.done:
			return
		}
	}
}

// readError turns websocket errors into errors an operator can act on.
func readError(err error) error {
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return loyalty.Errorf(loyalty.ETOOLARGE, "peer sent a message over the read limit; connection closed")
	case websocket.IsCloseError(err, websocket.CloseMessageTooBig):
		return loyalty.Errorf(loyalty.ETOOLARGE, "peer closed the connection: our message was over its read limit")
	}
	return fmt.Errorf("read: %w", err)
}

func (c *Conn) writeLoop() {
	defer c.wg.Done()
	ping := time.NewTicker(c.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			c.flush()
			c.ws.Close()
			return
		case b := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.fail(fmt.Errorf("write: %w", err))
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.opts.WriteTimeout)); err != nil {
				c.fail(fmt.Errorf("ping: %w", err))
			}
		}
	}
}

// flush sends what is still queued (such as an error frame explaining why the session ends)
// and a close frame, within one second in all: best effort, as the peer may already be gone.
func (c *Conn) flush() {
	deadline := time.Now().Add(time.Second)
	c.ws.SetWriteDeadline(deadline)
	for {
		select {
		case b := <-c.out:
			if c.ws.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
		default:
			c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
			return
		}
	}
}

// Read implements lsync.Conn.
func (c *Conn) Read(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	case <-c.done:
		// Deliver messages that arrived before the connection ended.
		select {
		case b := <-c.in:
			return b, nil
		default:
			return nil, c.Err()
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Write implements lsync.Conn. A full queue means the peer is not reading: the connection is
// closed rather than waited on.
func (c *Conn) Write(ctx context.Context, b []byte) error {
	select {
	case <-c.done:
		return c.Err()
	default:
	}
	select {
	case c.out <- b:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return ctx.Err()
	default:
		err := fmt.Errorf("peer too slow: %d messages waiting", c.opts.Queue)
		c.fail(err)
		return err
	}
}

// Close implements lsync.Conn. Messages already queued are still sent (for at most a second)
// before the close frame.
func (c *Conn) Close() error {
	c.fail(lsync.ErrClosed) // the writer flushes, then closes the socket, which ends the reader
	c.wg.Wait()
	return nil
}

// Dialer dials hub websockets.
type Dialer struct {
	Options Options
	Header  http.Header
	Timeout time.Duration
	// TLS configures wss:// connections: RootCAs nil means the system's roots. MinVersion is
	// raised to TLS 1.2 if lower. Nil means the system's roots and TLS 1.2 or newer.
	TLS *tls.Config
}

var _ lsync.Dialer = (*Dialer)(nil)

// Dial implements lsync.Dialer.
func (d *Dialer) Dial(ctx context.Context, url string) (lsync.Conn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tc := &tls.Config{}
	if d.TLS != nil {
		tc = d.TLS.Clone()
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	tc.NextProtos = nil // a websocket is HTTP/1.1
	wd := websocket.Dialer{HandshakeTimeout: timeout, Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc}
	c, resp, err := wd.DialContext(ctx, url, d.Header)
	if err != nil {
		if resp != nil {
			// The answer's body says why (the hub's JSON error, or a plain HTTP server saying
			// it expected TLS); gorilla keeps its first kilobyte.
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if why := strings.TrimSpace(string(b)); why != "" {
				return nil, &HandshakeError{Status: resp.StatusCode, Body: why, err: fmt.Errorf("websocket handshake: %s: %s: %w", resp.Status, why, err)}
			}
			return nil, &HandshakeError{Status: resp.StatusCode, err: fmt.Errorf("websocket handshake: %s: %w", resp.Status, err)}
		}
		return nil, err
	}
	return newConn(c, d.Options), nil
}

// HandshakeError is a websocket handshake the server answered with an HTTP status other than
// 101: Status and the start of the answer's Body say why.
type HandshakeError struct {
	Status int
	Body   string
	err    error
}

func (e *HandshakeError) Error() string { return e.err.Error() }
func (e *HandshakeError) Unwrap() error { return e.err }

// Upgrader accepts agent websockets on the hub.
type Upgrader struct {
	Options Options
}

// Upgrade upgrades an HTTP request to a sync connection. On failure it has already answered
// the request with an HTTP error.
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request) (lsync.Conn, error) {
	up := websocket.Upgrader{
		// An idle connection keeps a small read buffer and no write buffer: the hub holds one
		// connection per store, most of them idle (serverConn). The HTTP server's 4 KB buffers,
		// which gorilla could take over, are let go with the rest of the request.
		ReadBufferSize:  serverReadBuffer,
		WriteBufferPool: &writeBuffers,
		// Agents are not browsers; an Origin header means a browser page is trying to connect.
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			code := loyalty.EINVALID
			if status == http.StatusForbidden { // a browser page (an Origin header): not an agent
				code = loyalty.EFORBIDDEN
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]*loyalty.Error{"error": loyalty.Errorf(code,
				"this is the agents' websocket endpoint (docs/PROTOCOL.md): %v", reason)})
		},
	}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	// The HTTP server's read and write timeouts left deadlines on the connection; they must not
	// end a long-lived session. From here on the connection's own deadlines apply: the reader's
	// silence deadline, extended by every frame, and a deadline per write.
	c.NetConn().SetDeadline(time.Time{})
	return newServerConn(c, u.Options), nil
}
