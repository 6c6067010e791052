package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Handler is what the hub provides to server sessions. Every method is called from one session
// goroutine at a time per store, in the order the agent sent its messages.
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

// Health is what the hub learns about a store's sync state.
type Health struct {
	Connected     bool
	At            time.Time
	ClockOffsetMS int64
	Outbox        int64
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

type serverSession struct {
	store  string
	remote string // the agent's network address, for logs and for the session that replaces it
	notify chan struct{}
	// cancel ends the session; a cause with the code ESUPERSEDED is sent to the agent first.
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the session has fully ended
}

// Notify tells every session that the hub's change feed has reached cursor, so connected
// agents pull at once. It never blocks.
func (s *Server) Notify(cursor int64) {
	for {
		old := s.cursor.Load()
		if cursor <= old || s.cursor.CompareAndSwap(old, cursor) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		select {
		case ss.notify <- struct{}{}:
		default: // a notification is already pending; it will carry the newest cursor
		}
	}
}

// Sessions returns the number of connected stores.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
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
// It always closes conn. The error says why the session ended.
func (s *Server) Serve(ctx context.Context, conn Conn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(nil) })
	defer stop()

	rd := startReader(ctx, conn)
	defer func() { conn.Close(); cancel(nil); <-rd.done }()

	store, version, err := s.handshake(ctx, conn, rd)
	if err != nil {
		s.sendError(ctx, conn, 0, err)
		return fmt.Errorf("handshake: %w", err)
	}
	log := s.Logger.With(slog.String("store", store))
	ss := &serverSession{store: store, remote: remoteAddr(conn), notify: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	defer close(ss.done)
	s.register(ss)
	defer s.unregister(ss)
	owned, err := s.claim(ctx, ss) // across hub processes (SessionOwner, owner.go)
	if err != nil {
		s.goodbye(ctx, conn) // replaced while it claimed: the agent is told why
		return s.ended(ctx, conn, fmt.Errorf("claim the store's session: %w", err))
	}
	defer s.release(context.WithoutCancel(ctx), owned)
	s.seen(ctx, store, Health{Connected: true, Version: version})
	defer s.seen(context.WithoutCancel(ctx), store, Health{Connected: false})
	defer s.goodbye(ctx, conn) // runs first: a replaced session tells its agent why before anything else
	log.Info("agent connected", slog.Int("version", version))

	heartbeat := s.HeartbeatInterval
	silence := 3 * heartbeat
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
			if quiet := time.Since(lastHeard(conn, rd)); quiet > silence { // liveness is on the machine's clock, as lastHeard is
				// A message waiting while the session was busy is a sign of life, not silence.
				select {
				case b, ok := <-rd.msgs:
					if !ok {
						return rd.err
					}
					if err := s.handle(ctx, conn, store, b); err != nil {
						return s.ended(ctx, conn, err)
					}
				case <-time.After(min(heartbeat, time.Second)):
					return fmt.Errorf("store %s silent for %s", store, quiet.Round(time.Millisecond))
				}
			}
		case <-ss.notify:
			if err := s.send(ctx, conn, &Message{Type: TypeNotify, Notify: &Notify{Cursor: s.cursor.Load()}}); err != nil {
				return err
			}
		case b, ok := <-rd.msgs:
			if !ok {
				return rd.err
			}
			if err := s.handle(ctx, conn, store, b); err != nil {
				return s.ended(ctx, conn, err)
			}
		}
	}
}

// ended tells the agent why its session ends, unless the reason is internal, and returns it.
func (s *Server) ended(ctx context.Context, conn Conn, err error) error {
	if code := loyalty.ErrorCode(err); code != loyalty.EINTERNAL {
		s.sendError(ctx, conn, 0, err)
	}
	return err
}

func (s *Server) handshake(ctx context.Context, conn Conn, rd *reader) (store string, version int, err error) {
	timer := time.NewTimer(s.HelloTimeout)
	defer timer.Stop()
	var b []byte
	select {
	case <-timer.C:
		return "", 0, loyalty.Errorf(loyalty.EUNAUTHORIZED, "no hello within %s", s.HelloTimeout)
	case <-ctx.Done():
		return "", 0, ctx.Err()
	case msg, ok := <-rd.msgs:
		if !ok {
			return "", 0, rd.err
		}
		b = msg
	}
	return s.hello(ctx, conn, b)
}

// hello authenticates a session's first message and answers it with the welcome.
func (s *Server) hello(ctx context.Context, conn Conn, b []byte) (store string, version int, err error) {
	m, err := Decode(b)
	if err != nil {
		return "", 0, err
	} else if m.Type != TypeHello {
		return "", 0, loyalty.Errorf(loyalty.EINVALID, "the first message must be hello, got %s", m.Type)
	}
	h := m.Hello
	if version, err = Negotiate(h.Versions); err != nil {
		return "", 0, err
	}
	if err := s.Handler.Authenticate(ctx, h.Store, h.Token); err != nil {
		return "", 0, err
	}
	epoch, since, err := s.Handler.Epoch(ctx, h.Store)
	if err != nil {
		return "", 0, err
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
	return h.Store, version, s.send(ctx, conn, &Message{Type: TypeWelcome, ID: m.ID, Welcome: w})
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
	case TypePing:
		s.seen(ctx, store, Health{Connected: true, ClockOffsetMS: m.Ping.ClockOffsetMS, Outbox: m.Ping.Outbox})
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
