package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Handler is what the hub provides to server sessions. For a store, its methods are called by one
// session at a time, one call at a time (though not always from the same goroutine), in the order
// the agent sent its messages.
type Handler interface {
	// Authenticate checks a store's token. It returns EUNAUTHORIZED.
	Authenticate(ctx context.Context, store, token string) error
	// Push applies deltas pushed by store in one durable transaction and reports each outcome.
	// Deltas that break a rule are rejected in the Ack, not returned as an error; an error means
	// nothing was applied.
	Push(ctx context.Context, store string, deltas []loyalty.Delta) (*Ack, error)
	// Pull returns the changes in store's scope after req.Cursor, at most req.Limit members, and
	// the store's leases.
	Pull(ctx context.Context, store string, req Pull) (*Changes, error)
	// Subscribe adds req.Member to store's replica scope and returns it with its standing (and
	// the state of req.Voucher, if set). It returns ENOTFOUND.
	Subscribe(ctx context.Context, store string, req Subscribe) (*loyalty.Member, *Standing, error)
	// Seen records a store's sync health: connected or not, its clock offset and outbox length.
	Seen(ctx context.Context, store string, h Health) error
	// Epoch returns the hub database's epoch and, for store, from when on it must send again
	// what was acknowledged if it last saw another epoch (Welcome.Epoch).
	Epoch(ctx context.Context, store string) (epoch int64, resendSince time.Time, err error)
}

// Unsubscriber is a Handler that takes members out of a store's replica scope (TypeUnsubscribe,
// protocol version 2). A Handler without it answers unsubscribe with EUNAVAILABLE.
type Unsubscriber interface {
	// Unsubscribe takes members out of store's scope, durably, before it returns: the change feed
	// no longer carries them to the store. Members not in the scope, or unknown, are no error.
	Unsubscribe(ctx context.Context, store string, members []string) error
}

// Health is what the hub learns about a store's sync state.
type Health struct {
	Connected     bool
	At            time.Time
	Ping          bool // a ping's measurements: ClockOffsetMS and Outbox hold what it said, zeros included
	ClockOffsetMS int64
	Outbox        int64
	Unsynced      *Unsynced // as the agent's ping counted it (nil: it did not)
	Version       int
	AgentVersion  string
}

// Server runs hub-side sessions. Set the exported fields before the first Serve.
type Server struct {
	Handler           Handler
	Logger            *slog.Logger
	Now               func() time.Time
	HelloTimeout      time.Duration // how long a new connection may take to authenticate
	HeartbeatInterval time.Duration // advertised to agents; a session silent for 3x this is dropped
	MaxBatch          int           // most deltas per push and members per changes message
	MaxMessageBytes   int           // advertised to agents; enforced by the Conn's read limit

	cursor   atomic.Int64
	mu       sync.Mutex
	sessions map[string]*serverSession // by store: one live session per store
	closed   bool
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	ctx      context.Context
}

// NewServer returns a Server with default settings.
func NewServer(h Handler) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		Handler:           h,
		Logger:            slog.Default(),
		Now:               time.Now,
		HelloTimeout:      10 * time.Second,
		HeartbeatInterval: 10 * time.Second,
		MaxBatch:          500,
		MaxMessageBytes:   1 << 20,
		sessions:          make(map[string]*serverSession),
		ctx:               ctx,
		cancel:            cancel,
	}
}

// A session, once the agent is welcomed, holds one goroutine while it is idle: its reader, which
// waits in conn.Read and queues what it reads. Everything else starts when it is needed and ends
// when it is done, so that a hub with thousands of idle agents holds little for each:
//
//   - the worker, started by the first message queued (or a notification) while none runs,
//     handles the queued messages in order, then the pending notification, and ends when nothing
//     is left. Only it handles requests and writes replies, so replies keep the order of the
//     requests, and the reader goes on reading (transport pings included) while a request takes
//     long. The reader waits when pendingMessages are queued, which holds a peer that sends
//     faster than the hub can handle;
//   - the silence check is a timer (time.AfterFunc), not a goroutine: every heartbeat it ends a
//     session that has heard nothing for 3 heartbeats (a request answered counts as heard), unless
//     a request of it is waiting or being handled;
//   - Notify marks the session and starts the worker if none runs: one notification is pending at
//     most, and it carries the newest cursor when it is sent.
//
// The session ends when its context is done (Server.Close, ESUPERSEDED from a newer session,
// Disconnect, silence, an error handling a request) or its connection fails: the reader
// then waits for the worker, tells a replaced agent why, records the store as gone, and closes the
// connection.
type serverSession struct {
	s      *Server
	conn   Conn
	store  string
	token  string // what the agent authenticated with (Session.Token)
	remote string // the agent's network address, for logs and for the session that replaces it
	ctx    context.Context
	// cancel ends the session; a cause with the code ESUPERSEDED is sent to the agent first.
	cancel  context.CancelCauseFunc
	stopCtx func() bool   // stops ending the session with the Server's context
	done    chan struct{} // closed when the session has fully ended
	last    atomic.Int64  // unix nanoseconds of the last message read, or answered
	silence *time.Timer
	owned   *Session // the session as claimed across hub processes (SessionOwner), released at its end

	mu      sync.Mutex
	queue   [][]byte      // messages read, not yet handled; oldest first
	notify  bool          // a notification is due
	reading bool          // the reader runs: the worker may start (a ServerStepper's session never does)
	working bool          // the worker runs
	ended   bool          // the session ends: no worker starts
	room    chan struct{} // closed when the queue has room again, for a reader waiting for it
	worker  sync.WaitGroup
}

// pendingMessages is how many messages a session reads ahead of the one being handled.
const pendingMessages = 16

// Notify tells every session that the hub's change feed has reached cursor, so connected
// agents pull at once. It never blocks.
func (s *Server) Notify(cursor int64) { s.NotifyStores(cursor, nil) }

// NotifyStores is Notify for the sessions of stores only (nil: every session), for a change
// that concerns only them. It never blocks.
func (s *Server) NotifyStores(cursor int64, stores []string) {
	for {
		old := s.cursor.Load()
		if cursor <= old || s.cursor.CompareAndSwap(old, cursor) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wake := func(ss *serverSession) {
		ss.mu.Lock()
		ss.notify = true // if one is already pending, it will carry the newest cursor
		ss.wakeLocked()
		ss.mu.Unlock()
	}
	if stores == nil {
		for _, ss := range s.sessions {
			wake(ss)
		}
		return
	}
	for _, store := range stores {
		if ss := s.sessions[store]; ss != nil {
			wake(ss)
		}
	}
}

// Sessions returns the number of connected stores.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Busy returns the number of sessions with work in hand: a message or a notification to handle,
// its worker running, or its connection still writing. Connected agents that wait for nothing are
// not busy: their sessions hold only their readers (the bench measures them so).
func (s *Server) Busy() int {
	s.mu.Lock()
	sessions := slices.Collect(maps.Values(s.sessions))
	s.mu.Unlock()
	n := 0
	for _, ss := range sessions {
		ss.mu.Lock()
		busy := ss.working || len(ss.queue) > 0 || ss.notify
		ss.mu.Unlock()
		if f, ok := ss.conn.(Flusher); !busy && ok {
			busy = f.Writing()
		}
		if busy {
			n++
		}
	}
	return n
}

// Close ends every session and waits for them. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Serve runs one session on conn until the connection ends, ctx is done or the Server closes.
// It always closes conn. The error says why the session ended. The calling goroutine is the
// session's reader: Start runs the same session without holding its caller.
func (s *Server) Serve(ctx context.Context, conn Conn) error {
	ss, err := s.open(ctx, conn)
	if err != nil {
		return err
	}
	return ss.run()
}

// Start runs a session as Serve does, but returns once the handshake is over (on the caller's
// goroutine): the session goes on in a goroutine of its own, so a caller such as an HTTP handler
// can return and let go of what it holds. ended, if not nil, is called once with the error Serve
// would have returned, when the session has ended (before Start returns if the handshake failed).
// ctx must outlive the call: an HTTP handler passes context.WithoutCancel(r.Context()).
func (s *Server) Start(ctx context.Context, conn Conn, ended func(error)) {
	ss, err := s.open(ctx, conn)
	if err != nil {
		if ended != nil {
			ended(err)
		}
		return
	}
	go func() {
		var err error
		defer func() {
			// A panic ends this session only, as net/http's recovery did when sessions ran in
			// their HTTP handler; run has ended the session by then.
			if p := recover(); p != nil {
				err = ss.panicked(p)
			}
			if ended != nil {
				ended(err)
			}
		}()
		err = ss.run()
	}()
}

// open runs a session's handshake and registers it. On an error (or a panic) conn is closed and
// nothing of the session remains.
func (s *Server) open(ctx context.Context, conn Conn) (*serverSession, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(nil) })
	var ss *serverSession
	opened := false
	defer func() {
		if opened {
			return
		}
		if ss != nil {
			s.unregister(ss)
			close(ss.done)
		}
		conn.Close()
		cancel(nil)
		stop()
		s.wg.Done()
	}()
	store, token, version, err := s.handshake(ctx, conn)
	if err != nil {
		s.sendError(ctx, conn, 0, err)
		return nil, fmt.Errorf("handshake: %w", err)
	}
	ss = &serverSession{s: s, conn: conn, store: store, token: token, remote: remoteAddr(conn), ctx: ctx, cancel: cancel, stopCtx: stop, done: make(chan struct{})}
	ss.last.Store(time.Now().UnixNano())
	s.register(ss)
	owned, err := s.claim(ctx, ss) // across hub processes (SessionOwner, owner.go)
	if err != nil {
		s.goodbye(ctx, conn) // replaced while it claimed: the agent is told why
		return nil, s.ended(ctx, conn, fmt.Errorf("claim the store's session: %w", err))
	}
	ss.owned = owned
	s.seen(ctx, store, Health{Connected: true, Version: version})
	s.Logger.Info("agent connected", slog.String("store", store), slog.Int("version", version))
	// The timer is made for later and then set, so that the check it runs sees ss.silence.
	ss.silence = time.AfterFunc(time.Hour, ss.checkSilence)
	ss.silence.Reset(s.HeartbeatInterval)
	opened = true
	return ss, nil
}

// panicked logs a panic in one of the session's goroutines, as net/http logs one in a handler,
// and ends the session. It returns the session's error.
func (ss *serverSession) panicked(p any) error {
	stack := make([]byte, 64<<10)
	stack = stack[:runtime.Stack(stack, false)]
	ss.s.Logger.Error("panic in a sync session", slog.String("store", ss.store), slog.Any("panic", p), slog.String("stack", string(stack)))
	ss.cancel(fmt.Errorf("panic in the hub's session: %v", p))
	return context.Cause(ss.ctx)
}

// run is the session's reader, on the session's one lasting goroutine; it ends the session.
func (ss *serverSession) run() error {
	defer ss.end() // even on a panic
	ss.mu.Lock()
	ss.reading = true
	if ss.notify { // a change while the handshake finished: pull at once
		ss.wakeLocked()
	}
	ss.mu.Unlock()
	var err error
	for {
		var b []byte
		if b, err = ss.conn.Read(ss.ctx); err != nil {
			break
		}
		ss.last.Store(time.Now().UnixNano())
		if !ss.deliver(b) {
			break
		}
	}
	if ss.ctx.Err() != nil {
		err = context.Cause(ss.ctx) // the session was ended: say why, rather than how reading stopped
	}
	ss.cancel(err)
	return err
}

// deliver queues a message for the worker, waiting while pendingMessages are queued. It reports
// false if the session ended meanwhile.
func (ss *serverSession) deliver(b []byte) bool {
	ss.mu.Lock()
	for len(ss.queue) >= pendingMessages {
		if ss.room == nil {
			ss.room = make(chan struct{})
		}
		room := ss.room
		ss.mu.Unlock()
		select {
		case <-room:
		case <-ss.ctx.Done():
			return false
		}
		ss.mu.Lock()
	}
	ss.queue = append(ss.queue, b)
	ss.wakeLocked()
	ss.mu.Unlock()
	return true
}

// wakeLocked starts the worker unless it runs. ss.mu is held.
func (ss *serverSession) wakeLocked() {
	if !ss.reading || ss.working || ss.ended {
		return
	}
	ss.working = true
	ss.worker.Add(1)
	go ss.work()
}

// work handles the queued messages in order, then the pending notification, until there is
// nothing left to do or the session ends.
func (ss *serverSession) work() {
	defer ss.worker.Done()
	defer func() {
		if p := recover(); p != nil { // nothing above the worker could recover it
			ss.mu.Lock()
			ss.working = false
			ss.mu.Unlock()
			ss.panicked(p)
		}
	}()
	s := ss.s
	for {
		ss.mu.Lock()
		var b []byte
		notify := false
		switch {
		case ss.ended || ss.ctx.Err() != nil:
			ss.working = false
			ss.mu.Unlock()
			return
		case len(ss.queue) > 0:
			b, ss.queue[0], ss.queue = ss.queue[0], nil, ss.queue[1:]
			if len(ss.queue) == 0 {
				ss.queue = nil // an idle session holds no queue
			}
			if ss.room != nil {
				close(ss.room)
				ss.room = nil
			}
		case ss.notify:
			ss.notify, notify = false, true
		default:
			ss.working = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		var err error
		if notify {
			err = s.send(ss.ctx, ss.conn, &Message{Type: TypeNotify, Notify: &Notify{Cursor: s.cursor.Load()}})
		} else if err = s.handle(ss.ctx, ss.conn, ss.store, b); err != nil {
			err = s.ended(ss.ctx, ss.conn, err)
		} else {
			ss.last.Store(time.Now().UnixNano()) // the agent waited for this answer, not silent
		}
		if err != nil {
			ss.cancel(err)
		}
	}
}

// checkSilence ends the session if nothing was heard from the agent for 3 heartbeats while none
// of its requests was being handled (the worker was not busy); otherwise it checks again a
// heartbeat later. Liveness is on the machine's clock, as the times it compares are.
func (ss *serverSession) checkSilence() {
	if ss.ctx.Err() != nil {
		return
	}
	heartbeat := ss.s.HeartbeatInterval
	ss.mu.Lock()
	defer ss.mu.Unlock()
	busy := ss.working || len(ss.queue) > 0
	if quiet := time.Since(heardAfter(ss.conn, ss.last.Load())); !busy && quiet > 3*heartbeat {
		ss.cancel(fmt.Errorf("store %s silent for %s", ss.store, quiet.Round(time.Millisecond)))
		return
	}
	if !ss.ended { // a stopped timer set again would keep the session from being collected
		ss.silence.Reset(heartbeat)
	}
}

// end finishes the session once its reader stopped: it waits for the worker, tells a replaced
// agent why, records the store as gone, unregisters the session and closes the connection.
func (ss *serverSession) end() {
	s := ss.s
	ss.mu.Lock()
	ss.ended = true
	ss.queue = nil
	ss.silence.Stop()
	ss.mu.Unlock()
	ss.worker.Wait()
	defer func() { // also when the Handler panics below: the store's next session waits for done
		s.unregister(ss)
		close(ss.done)
		ss.conn.Close()
		ss.stopCtx()
		s.wg.Done()
	}()
	s.goodbye(ss.ctx, ss.conn) // first: a replaced session tells its agent why before anything else
	s.seen(context.WithoutCancel(ss.ctx), ss.store, Health{Connected: false})
	s.release(context.WithoutCancel(ss.ctx), ss.owned)
}

// ended tells the agent why its session ends, unless the reason is internal, and returns it.
func (s *Server) ended(ctx context.Context, conn Conn, err error) error {
	if code := loyalty.ErrorCode(err); code != loyalty.EINTERNAL {
		s.sendError(ctx, conn, 0, err)
	}
	return err
}

func (s *Server) handshake(ctx context.Context, conn Conn) (store, token string, version int, err error) {
	late := loyalty.Errorf(loyalty.EUNAUTHORIZED, "no hello within %s", s.HelloTimeout)
	hctx, cancel := context.WithTimeoutCause(ctx, s.HelloTimeout, late)
	defer cancel()
	if l, ok := conn.(ReadLimiter); ok {
		l.SetReadLimit(MaxHelloBytes)
		defer l.SetReadLimit(0) // the Conn's own, before the session's first read
	}
	b, err := conn.Read(hctx)
	if err != nil {
		if ctx.Err() == nil && context.Cause(hctx) == late {
			return "", "", 0, late
		} else if ctx.Err() != nil {
			return "", "", 0, ctx.Err()
		}
		return "", "", 0, err
	}
	return s.hello(ctx, conn, b)
}

// hello authenticates a session's first message and answers it with the welcome.
func (s *Server) hello(ctx context.Context, conn Conn, b []byte) (store, token string, version int, err error) {
	m, err := Decode(b)
	if err != nil {
		return "", "", 0, err
	} else if m.Type != TypeHello {
		return "", "", 0, loyalty.Errorf(loyalty.EINVALID, "the first message must be hello, got %s", m.Type)
	}
	h := m.Hello
	if version, err = Negotiate(h.Versions); err != nil {
		return "", "", 0, err
	}
	if err := loyalty.ValidateID("store", h.Store); err != nil { // before it is looked up, or quoted in the refusal
		return "", "", 0, err
	}
	if err := s.Handler.Authenticate(ctx, h.Store, h.Token); err != nil {
		return "", "", 0, err
	}
	epoch, since, err := s.Handler.Epoch(ctx, h.Store)
	if err != nil {
		return "", "", 0, err
	}
	w := &Welcome{
		Version:         version,
		Store:           h.Store,
		HubTime:         unixMilli(s.Now()),
		HeartbeatMillis: s.HeartbeatInterval.Milliseconds(),
		MaxBatch:        s.MaxBatch,
		MaxMessageBytes: s.MaxMessageBytes,
		Epoch:           epoch,
		ResendSince:     unixMilli(since),
	}
	return h.Store, h.Token, version, s.send(ctx, conn, &Message{Type: TypeWelcome, ID: m.ID, Welcome: w})
}

// handle answers one message. Replies go out in the order requests came in, and every reply is
// queued before the next message is read: this is what lets an agent trust that changes it pulls
// after a push already reflect that push (see docs/PROTOCOL.md, "Ordering").
func (s *Server) handle(ctx context.Context, conn Conn, store string, b []byte) error {
	m, err := Decode(b)
	if err != nil {
		return err
	}
	switch m.Type {
	case TypePush:
		if n := len(m.Push.Deltas); n > s.MaxBatch {
			return loyalty.Errorf(loyalty.ETOOLARGE, "push of %d deltas is over the limit of %d", n, s.MaxBatch)
		}
		ack, err := s.Handler.Push(ctx, store, m.Push.Deltas)
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		return s.send(ctx, conn, &Message{Type: TypeAck, ID: m.ID, Ack: ack})
	case TypePull:
		req := *m.Pull
		if req.Limit <= 0 || req.Limit > s.MaxBatch {
			req.Limit = s.MaxBatch
		}
		ch, err := s.Handler.Pull(ctx, store, req)
		if err != nil {
			return fmt.Errorf("pull: %w", err)
		}
		return s.send(ctx, conn, &Message{Type: TypeChanges, ID: m.ID, Changes: ch})
	case TypeSubscribe:
		mem, st, err := s.Handler.Subscribe(ctx, store, *m.Subscribe)
		if code := loyalty.ErrorCode(err); code == loyalty.EINTERNAL {
			return fmt.Errorf("subscribe: %w", err)
		} else if err != nil {
			return s.sendError(ctx, conn, m.ID, err) // a request error, not a session error
		}
		return s.send(ctx, conn, &Message{Type: TypeMember, ID: m.ID, Member: mem, Standing: st})
	case TypeUnsubscribe:
		var err error = loyalty.Errorf(loyalty.EUNAVAILABLE, "this hub does not take members out of a store's scope")
		if u, ok := s.Handler.(Unsubscriber); ok && len(m.Unsubscribe.Members) > s.MaxBatch {
			err = loyalty.Errorf(loyalty.ETOOLARGE, "unsubscribe of %d members is over the limit of %d", len(m.Unsubscribe.Members), s.MaxBatch)
		} else if ok {
			err = u.Unsubscribe(ctx, store, m.Unsubscribe.Members)
		}
		if code := loyalty.ErrorCode(err); code == loyalty.EINTERNAL {
			return fmt.Errorf("unsubscribe: %w", err)
		} else if err != nil {
			return s.sendError(ctx, conn, m.ID, err) // a request error, not a session error
		}
		return s.send(ctx, conn, &Message{Type: TypeUnsubscribed, ID: m.ID, Unsubscribed: m.Unsubscribe})
	case TypePing:
		s.seen(ctx, store, Health{Connected: true, Ping: true, ClockOffsetMS: m.Ping.ClockOffsetMS, Outbox: m.Ping.Outbox, Unsynced: m.Ping.Unsynced})
		return s.send(ctx, conn, &Message{Type: TypePong, ID: m.ID, Pong: &Pong{SentAt: m.Ping.SentAt, HubTime: unixMilli(s.Now())}})
	default:
		return loyalty.Errorf(loyalty.EINVALID, "an agent may not send %s after hello", m.Type)
	}
}

func (s *Server) seen(ctx context.Context, store string, h Health) {
	h.At = s.Now()
	if err := s.Handler.Seen(ctx, store, h); err != nil && !errors.Is(err, context.Canceled) {
		s.Logger.Warn("record store health", slog.String("store", store), slog.Any("err", err))
	}
}

// register makes ss the store's one live session. The newest connection wins: an older session
// is told why (ESUPERSEDED, naming the new connection's address), ended and waited for, so the
// two never call the Handler for the same store at once.
//
// Once, when an agent restarts or reconnects before the hub noticed its old connection was gone,
// is normal. Over and over, it is two agents running with one store's token, knocking each other
// off: the warning says so, and the displaced agent backs off for its longest backoff (Client.Run).
func (s *Server) register(ss *serverSession) {
	s.mu.Lock()
	old := s.sessions[ss.store]
	s.sessions[ss.store] = ss
	s.mu.Unlock()
	if old != nil {
		s.Logger.Warn("a new connection for a store replaced its live sync session",
			slog.String("store", ss.store), slog.String("old_remote", old.remote), slog.String("new_remote", ss.remote),
			slog.String("hint", fmt.Sprintf("if this repeats, two agents may be running with store %s's token; "+
				"stop one, or give each its own store id (once, after an agent restarted, is normal)", ss.store)))
		old.cancel(Superseded(ss.store, ss.remote))
		<-old.done
	}
}

// Superseded is the error the hub sends an agent whose session it ends because another
// connection for its store, from remote, authenticated (docs/PROTOCOL.md, "One session per
// store"). It names only the other connection's network address, which the store may know.
func Superseded(store, remote string) *loyalty.Error {
	return loyalty.Errorf(loyalty.ESUPERSEDED, "another connection for store %s, from %s, took over this store's session at the hub; "+
		"two agents may be running with store %s's token: stop one, or give each its own store id", store, remote, store)
}

// goodbye tells the agent that its session was replaced, if it was. The session's context is
// done by then, so the message is queued on a context of its own, for at most a second.
func (s *Server) goodbye(ctx context.Context, conn Conn) {
	cause := context.Cause(ctx)
	if loyalty.ErrorCode(cause) != loyalty.ESUPERSEDED {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	s.sendError(wctx, conn, 0, cause)
}

// Disconnect ends a store's live session, if any: after its token was replaced, say.
func (s *Server) Disconnect(store string) {
	s.mu.Lock()
	ss := s.sessions[store]
	s.mu.Unlock()
	if ss != nil {
		ss.cancel(nil)
	}
}

func (s *Server) unregister(ss *serverSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[ss.store] == ss {
		delete(s.sessions, ss.store)
	}
}

func (s *Server) send(ctx context.Context, conn Conn, m *Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	return conn.Write(ctx, b)
}

func (s *Server) sendError(ctx context.Context, conn Conn, id uint64, err error) error {
	return s.send(ctx, conn, &Message{Type: TypeError, ID: id, Error: loyalty.AsError(err)})
}
