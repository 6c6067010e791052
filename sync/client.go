package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// ClientHandler is what the agent provides to its sync client. Methods are called from the
// client's session goroutine only, one at a time.
type ClientHandler interface {
	// Cursor returns the change-feed cursor the replica has reached.
	Cursor(ctx context.Context) (int64, error)
	// Pending returns up to limit outbox deltas with a local sequence number after seq, oldest first.
	Pending(ctx context.Context, after int64, limit int) ([]Outgoing, error)
	// PendingCount returns the number of deltas not yet acknowledged.
	PendingCount(ctx context.Context) (int64, error)
	// ApplyAck durably records the hub's acknowledgement: acknowledged deltas leave the outbox and
	// balances move to the hub's, in one transaction.
	ApplyAck(ctx context.Context, ack *Ack) error
	// ApplyChanges durably applies a page of the change feed and advances the cursor, in one transaction.
	ApplyChanges(ctx context.Context, ch *Changes) error
	// ApplyMember stores a member the hub sent in reply to Subscribe.
	ApplyMember(ctx context.Context, m *loyalty.Member) error
	// Epoch is called at every session's start with the hub's epoch, before anything is pushed
	// or pulled. If the replica last saw another epoch, the hub was restored from a backup: the
	// handler puts every delta it made since since (the hub's clock) back in the outbox, even
	// acknowledged ones, starts the change feed over (cursor 0), and drops its leases, in one
	// transaction. A delta is since since when its own time on the hub's clock (its occurred_at
	// and clock offset) is, or when its time on the agent's clock is since since less offset, the
	// hub's clock minus the agent's now: a clock set right in between must not hide a delta. It
	// records the epoch in any case.
	Epoch(ctx context.Context, epoch int64, since time.Time, offset time.Duration) error
}

// Outgoing is an outbox delta with its local sequence number.
type Outgoing struct {
	Seq   int64
	Delta loyalty.Delta
}

// Faults injects failures for tests and the demo. The zero value injects nothing.
type Faults struct {
	// DuplicatePush sends every push batch twice, so every delta is delivered at least twice.
	DuplicatePush bool
	// BeforeAck runs when an ack arrives, before the agent records it. If it returns an error
	// the session ends at once with the ack unrecorded, as if the agent died between the hub's
	// commit and its own: the deltas stay in the outbox and are pushed again.
	BeforeAck func(*Ack) error
}

// Status is a snapshot of the client's connection state.
type Status struct {
	Online          bool          `json:"online"`
	Version         int           `json:"protocol_version,omitempty"`
	MaxBatch        int           `json:"-"` // the most deltas or member ids the hub takes in one message (its welcome's max_batch; 0: not told)
	ConnectedAt     time.Time     `json:"connected_at,omitzero"`
	LastSync        time.Time     `json:"last_sync,omitzero"` // last change-feed page or ack applied
	LastError       string        `json:"last_error,omitempty"`
	Hub             string        `json:"hub,omitempty"` // the hub URL of the current session, or of the last one tried
	ClockOffset     time.Duration `json:"-"`
	ClockOffsetMS   int64         `json:"clock_offset_ms"` // hub clock minus agent clock
	Sessions        int           `json:"sessions"`        // sessions opened since start
	DeltasPushed    int64         `json:"deltas_pushed"`
	DeltasConfirmed int64         `json:"deltas_confirmed"` // acknowledged applied or duplicate
	Duplicates      int64         `json:"duplicates"`       // acknowledged as applied earlier: redeliveries the hub ignored
}

// Client is the agent side of the protocol: it keeps one session open to the hub, reconnecting
// with exponential backoff and jitter, pushes the outbox and pulls the change feed.
type Client struct {
	URL string
	// URLs, if set, replaces URL with several hub processes serving the same database: the first
	// is dialed first, and every reconnection after a failed dial or an ended session goes to
	// the next one in the list, round and round, with the usual backoff in between. So an agent
	// whose hub died reaches another at its next attempt.
	URLs    []string
	Store   string
	Token   string
	Dialer  Dialer
	Handler ClientHandler
	Logger  *slog.Logger
	Now     func() time.Time

	AgentVersion      string
	MinBackoff        time.Duration
	MaxBackoff        time.Duration
	HeartbeatInterval time.Duration // used until the hub's welcome says otherwise
	RequestTimeout    time.Duration // handshake and subscribe replies
	BatchSize         int           // deltas per push
	Window            int           // pushes in flight before waiting for acks
	// PushDelay coalesces pushes: a Kick with nothing in flight pushes after this delay rather
	// than at once, and a Kick while a push is in flight waits for its ack, so that the deltas
	// a busy till makes meanwhile go in one push, one hub transaction and one ack, rather than
	// one each. The outbox is durable before Kick, so the delay costs only how soon the hub
	// hears; 0 pushes at every Kick.
	PushDelay time.Duration
	Faults    Faults
	// Wait, if set, replaces the real-clock wait before each reconnection: it is given the backoff
	// the client chose (MaxBackoff after the hub handed the store's session to another
	// connection) and the random wait drawn from it, and the client dials again when it returns
	// (or stops, if ctx is done). Tests set it to see each backoff without waiting it out.
	Wait func(ctx context.Context, backoff, wait time.Duration)

	kick  chan struct{}
	calls chan *call
	next  int // the index in URLs of the hub the next session dials

	mu     sync.Mutex
	status Status
}

type call struct {
	member  string // subscribe to this member; empty: refresh (pull now)
	voucher string // and ask for this voucher's state
	qr      string // the member's code the store scanned, for a member it does not hold yet
	reply   chan callResult

	unsubscribe []string // not nil: take these members out of the store's scope instead
}

type callResult struct {
	m        *loyalty.Member
	standing *Standing
	err      error
}

// NewClient returns a Client with default settings.
func NewClient(url, store, token string, d Dialer, h ClientHandler) *Client {
	return &Client{
		URL: url, Store: store, Token: token, Dialer: d, Handler: h,
		Logger:            slog.Default(),
		Now:               time.Now,
		MinBackoff:        250 * time.Millisecond,
		MaxBackoff:        30 * time.Second,
		HeartbeatInterval: 10 * time.Second,
		RequestTimeout:    10 * time.Second,
		BatchSize:         250,
		Window:            4,
		kick:              make(chan struct{}, 1),
		calls:             make(chan *call),
	}
}

// Kick tells the client that the outbox has new deltas. It never blocks.
func (c *Client) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Status returns a snapshot of the connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.ClockOffsetMS = s.ClockOffset.Milliseconds()
	return s
}

func (c *Client) update(fn func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(&c.status)
}

// Subscribe asks the hub for a member not yet in the replica, without a scanned code: the hub
// hands over only a member the store has a reason to hold (its home store's, one in its scope
// already), and answers EUNAUTHORIZED otherwise, for an unknown member too. It returns
// EUNAVAILABLE at once when offline.
func (c *Client) Subscribe(ctx context.Context, member string) (*loyalty.Member, error) {
	m, _, err := c.Lookup(ctx, member, "", "")
	return m, err
}

// Lookup is Subscribe that also returns the member's standing at the hub, with the state of
// voucher if it is not empty. qr is the member's code (or the voucher's) the till scanned, if it
// did: what lets the hub hand over a member the store does not hold yet. The member copy is in
// the replica (ApplyMember) when it returns. It returns EUNAVAILABLE at once when offline, and
// when ctx ends before the hub answers.
func (c *Client) Lookup(ctx context.Context, member, voucher, qr string) (*loyalty.Member, *Standing, error) {
	if !c.Status().Online {
		return nil, nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "the store is offline")
	}
	r := c.ask(ctx, &call{member: member, voucher: voucher, qr: qr})
	return r.m, r.standing, r.err
}

// ask hands cl to the session and waits for its answer; EUNAVAILABLE if ctx ends first.
func (c *Client) ask(ctx context.Context, cl *call) callResult {
	late := callResult{err: loyalty.Errorf(loyalty.EUNAVAILABLE, "the hub did not answer in time")}
	cl.reply = make(chan callResult, 1)
	select {
	case c.calls <- cl:
	case <-ctx.Done():
		return late
	}
	select {
	case r := <-cl.reply:
		return r
	case <-ctx.Done():
		return late
	}
}

// Unsubscribe asks the hub to take members out of the store's replica scope, and returns once
// the hub has done so durably. It returns EUNAVAILABLE at once when offline or when the session's
// protocol version is older than 2 (a hub that cannot), and when ctx ends before the hub answers.
func (c *Client) Unsubscribe(ctx context.Context, members []string) error {
	if st := c.Status(); !st.Online {
		return loyalty.Errorf(loyalty.EUNAVAILABLE, "the store is offline")
	} else if st.Version < 2 {
		return loyalty.Errorf(loyalty.EUNAVAILABLE, "the hub speaks sync protocol version %d, which cannot take members out of a store's scope; upgrade the hub", st.Version)
	}
	if members == nil {
		members = []string{}
	}
	return c.ask(ctx, &call{unsubscribe: members}).err
}

// Refresh pulls the change feed now and waits until it is applied (new program, leases). It
// returns EUNAVAILABLE at once when offline.
func (c *Client) Refresh(ctx context.Context) error {
	if !c.Status().Online {
		return loyalty.Errorf(loyalty.EUNAVAILABLE, "the store is offline")
	}
	return c.ask(ctx, &call{}).err
}

// Run keeps a session open until ctx is done. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.MinBackoff
	for {
		start := c.Now()
		err := c.session(ctx)
		c.update(func(s *Status) {
			s.Online = false
			if err != nil && ctx.Err() == nil {
				s.LastError = err.Error()
			}
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.Now().Sub(start) > 2*c.MaxBackoff {
			backoff = c.MinBackoff // the session was healthy for a while: start over
		}
		superseded := IsSuperseded(err)
		if superseded {
			// Another connection for this store took over at the hub. Connecting again at once
			// would knock that one off in turn: two agents sharing a token would fight every
			// second. Waiting the longest backoff makes them take turns slowly. (An agent that
			// restarts is never slowed: the hub tells the old connection, not the new one.)
			backoff = c.MaxBackoff
		}
		// Full jitter: thousands of stores reconnecting after a regional outage spread out.
		wait := time.Duration(rand.Int64N(int64(backoff))) + c.MinBackoff/2
		if superseded {
			c.Logger.Warn("the hub gave this store's sync session to another connection for the same store: "+
				"two agents may be running with this store's token; stop one, or give each its own store id. "+
				"Reconnecting after the longest backoff (sync.max_backoff)",
				slog.Any("err", err), slog.Duration("in", wait))
		} else {
			c.Logger.Warn("sync session ended; reconnecting", slog.Any("err", err), slog.Duration("in", wait))
		}
		if c.Wait != nil {
			c.Wait(ctx, backoff, wait)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		backoff = min(2*backoff, c.MaxBackoff)
	}
}

// hub returns the URL the next session dials and moves on to the next of URLs for the one after.
func (c *Client) hub() string {
	if len(c.URLs) == 0 {
		return c.URL
	}
	url := c.URLs[c.next%len(c.URLs)]
	c.next++
	return url
}

// clientSession is the state of one connection.
type clientSession struct {
	*Client
	conn        Conn
	nextID      uint64
	pushedSeq   int64 // highest outbox seq sent in this session
	inflight    int   // pushes sent and not yet acked
	initialDone bool  // the whole outbox as of connect has been sent, so pulls are safe
	pulling     bool
	wantPull    bool
	notified    int64 // the newest cursor a notify named while a pull was due or in flight
	cursor      int64
	calls       map[uint64]*call
	refreshes   []*call // waiting for the next complete change-feed answer
	batchSize   int
	maxBytes    int
	epoch       int64     // the hub's, from the welcome (0: a hub that names none)
	resendSince time.Time // hub clock
	offsets     offsetSamples
}

// offsetSamples keeps a session's last measurements of the hub's clock (the welcome's, then each
// pong's) and picks the one with the shortest round trip, as NTP does. A measurement's error is at
// most half its round trip, and on a busy machine one round trip in a few takes tens or hundreds
// of milliseconds (the agent's goroutine waits for a core): taking each as it came, the agent
// dated its changes that far off until the next heartbeat. Clocks drift by parts per million, so
// the best of the last few heartbeats is still current, unless a clock was set meanwhile (a till
// that booted with its clock behind, then NTP stepped it; the hub's clock set right): then the new
// measurement's bounds and the best one's do not meet, and the kept ones are dropped. A new
// session starts afresh.
type offsetSamples struct {
	rtt    [offsetWindow]time.Duration
	offset [offsetWindow]time.Duration
	n      int // samples kept, up to offsetWindow
	next   int // where the next one goes
}

// offsetWindow is how many measurements offsetSamples keeps: at the default heartbeat, about a
// minute and a half's worth.
const offsetWindow = 8

// offsetSlack is what the hub's and the agent's clock readings, in whole milliseconds on the
// wire, may add to a measurement's error beyond half its round trip.
const offsetSlack = 2 * time.Millisecond

// add keeps a measurement and returns the offset of the one with the shortest round trip kept
// (the newest of equals). A measurement whose bounds (offset ± half its round trip) do not meet
// the best one's means a clock was set: the others are dropped. One with a negative round trip
// (a clock set back during it) is used as it is, and kept by none.
func (o *offsetSamples) add(rtt, offset time.Duration) time.Duration {
	if rtt < 0 {
		o.n = 0
		return offset
	}
	if o.n > 0 {
		b := o.offset[o.best()] - offset
		if b < 0 {
			b = -b
		}
		if b > (rtt+o.rtt[o.best()])/2+offsetSlack {
			o.n = 0
		}
	}
	o.rtt[o.next], o.offset[o.next] = rtt, offset
	o.next = (o.next + 1) % offsetWindow
	o.n = min(o.n+1, offsetWindow)
	return o.offset[o.best()]
}

// best is the index of the kept measurement with the shortest round trip, the newest of equals.
func (o *offsetSamples) best() int {
	best := -1
	for k := range o.n { // oldest first
		i := (o.next - o.n + k + offsetWindow) % offsetWindow
		if best < 0 || o.rtt[i] <= o.rtt[best] {
			best = i
		}
	}
	return best
}

func (c *Client) session(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	url := c.hub()
	c.update(func(s *Status) { s.Hub = url })
	conn, err := c.Dialer.Dial(ctx, url)
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	rd := startReader(ctx, conn)
	s := &clientSession{Client: c, conn: conn, calls: make(map[uint64]*call), batchSize: c.BatchSize, maxBytes: 1 << 20}
	defer func() {
		conn.Close()
		var why *loyalty.Error
		if err != nil && ctx.Err() == nil && !errors.As(err, &why) {
			if said := lastWord(rd); said != nil {
				err = said
			}
		}
		cancel()
		<-rd.done
		s.end()
	}()
	heartbeat, err := s.handshake(ctx, rd)
	if err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	ticker := time.NewTicker(heartbeat)
	defer ticker.Stop()
	var pushTimer *time.Timer
	var pushSoon <-chan time.Time // PushDelay's timer, while one runs
	defer func() {
		if pushTimer != nil {
			pushTimer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.kick:
			switch {
			case c.PushDelay <= 0:
				if err := s.pushMore(ctx); err != nil {
					return err
				}
			case s.inflight == 0 && pushSoon == nil:
				pushTimer = time.NewTimer(c.PushDelay)
				pushSoon = pushTimer.C
			}
			// Otherwise the ack of the push in flight, or the timer, pushes what is new.
		case <-pushSoon:
			pushSoon = nil
			if err := s.pushMore(ctx); err != nil {
				return err
			}
		case cl := <-c.calls:
			if cl.unsubscribe != nil && s.Status().Version < 2 { // a hub of version 1 would end the session
				cl.reply <- callResult{err: loyalty.Errorf(loyalty.EUNAVAILABLE, "the hub cannot take members out of a store's scope (sync protocol version 1)")}
				continue
			} else if cl.unsubscribe != nil {
				s.nextID++
				s.calls[s.nextID] = cl
				if err := s.send(ctx, &Message{Type: TypeUnsubscribe, ID: s.nextID, Unsubscribe: &Unsubscribe{Members: cl.unsubscribe}}); err != nil {
					return err
				}
				continue
			}
			if cl.member == "" {
				s.refreshes = append(s.refreshes, cl)
				if err := s.pull(ctx); err != nil {
					return err
				}
				continue
			}
			s.nextID++
			s.calls[s.nextID] = cl
			if err := s.send(ctx, &Message{Type: TypeSubscribe, ID: s.nextID, Subscribe: &Subscribe{Member: cl.member, Voucher: cl.voucher, QR: cl.qr}}); err != nil {
				return err
			}
		case <-ticker.C:
			if silent := time.Since(lastHeard(conn, rd)); silent > 3*heartbeat {
				select {
				case b, ok := <-rd.msgs: // waiting while we were busy: the hub is alive
					if !ok {
						return rd.err
					}
					if err := s.handle(ctx, b); err != nil {
						return err
					}
				case <-time.After(min(heartbeat, time.Second)):
					return fmt.Errorf("hub silent for %s", silent.Round(time.Millisecond))
				}
			}
			if err := s.heartbeat(ctx); err != nil {
				return err
			}
		case b, ok := <-rd.msgs:
			if !ok {
				return rd.err
			}
			if err := s.handle(ctx, b); err != nil {
				return err
			}
		}
	}
}

// lastWord returns the hub's reason for ending the session if it is among the messages that
// arrived before the connection closed, or nil. A hub that ends a session says why first
// (ESUPERSEDED, say), but the session may have failed on a write to the closed connection before
// it read that. The connection must be closed, so that the reader only has what already arrived.
// What else is there is dropped, as it would be without looking: an ack not recorded means its
// deltas are pushed again and acknowledged as duplicates.
func lastWord(rd *reader) error {
	bound := time.NewTimer(time.Second) // a Conn whose Read does not end once it is closed
	defer bound.Stop()
	for {
		select {
		case b, ok := <-rd.msgs:
			if !ok {
				return nil
			}
			if m, err := Decode(b); err == nil && m.Type == TypeError && m.ID == 0 {
				return fmt.Errorf("hub ended the session: %w", m.Error)
			}
		case <-bound.C:
			return nil
		}
	}
}

// start begins a session after the welcome: the whole outbox goes out before the first pull (see
// docs/PROTOCOL.md, "Ordering").
func (s *clientSession) start(ctx context.Context) error {
	if s.epoch != 0 {
		if err := s.Handler.Epoch(ctx, s.epoch, s.resendSince, s.Status().ClockOffset); err != nil {
			return fmt.Errorf("record the hub's epoch: %w", err)
		}
	}
	var err error
	if s.cursor, err = s.Handler.Cursor(ctx); err != nil {
		return err
	}
	if err := s.reportBacklog(ctx); err != nil { // unsynced.go
		return err
	}
	return s.pushMore(ctx)
}

// heartbeat pings the hub with the agent's health and pulls, which renews the store's budget
// leases while it is connected.
func (s *clientSession) heartbeat(ctx context.Context) error {
	n, err := s.Handler.PendingCount(ctx)
	if err != nil {
		return err
	}
	st := s.Status()
	ping := &Ping{SentAt: unixMilli(s.Now()), ClockOffsetMS: st.ClockOffset.Milliseconds(), Outbox: n}
	if c, ok := s.Handler.(UnsyncedCounter); ok {
		u, err := c.Unsynced(ctx)
		if err != nil {
			return err
		}
		ping.Unsynced = &u
	}
	if err := s.send(ctx, &Message{Type: TypePing, Ping: ping}); err != nil {
		return err
	}
	return s.pull(ctx)
}

// end fails every call still waiting for the hub.
func (s *clientSession) end() {
	for _, cl := range append(slices.Collect(maps.Values(s.calls)), s.refreshes...) {
		cl.reply <- callResult{err: loyalty.Errorf(loyalty.EUNAVAILABLE, "connection to the hub lost")}
	}
	s.calls, s.refreshes = map[uint64]*call{}, nil
}

func (s *clientSession) handshake(ctx context.Context, rd *reader) (time.Duration, error) {
	sent, err := s.hello(ctx)
	if err != nil {
		return 0, err
	}
	timer := time.NewTimer(s.RequestTimeout)
	defer timer.Stop()
	var b []byte
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-timer.C:
		return 0, fmt.Errorf("no welcome within %s", s.RequestTimeout)
	case msg, ok := <-rd.msgs:
		if !ok {
			return 0, fmt.Errorf("handshake: %w", rd.err)
		}
		b = msg
	}
	return s.welcome(b, sent)
}

// hello opens the session; it returns when it was sent, on the agent's clock.
func (s *clientSession) hello(ctx context.Context) (time.Time, error) {
	sent := s.Now()
	hello := &Hello{Versions: Versions, Store: s.Store, Token: s.Token, AgentVersion: s.AgentVersion, SentAt: unixMilli(sent)}
	return sent, s.send(ctx, &Message{Type: TypeHello, Hello: hello})
}

// welcome takes the hub's answer to hello, sent at sent, and returns the heartbeat interval.
func (s *clientSession) welcome(b []byte, sent time.Time) (time.Duration, error) {
	m, err := Decode(b)
	if err != nil {
		return 0, err
	}
	switch m.Type {
	case TypeError:
		return 0, fmt.Errorf("hub refused the session: %w", m.Error)
	case TypeWelcome:
	default:
		return 0, fmt.Errorf("expected welcome, got %s", m.Type)
	}
	w := m.Welcome
	recv := s.Now()
	if w.MaxBatch > 0 && w.MaxBatch < s.batchSize {
		s.batchSize = w.MaxBatch
	}
	if w.MaxMessageBytes > 0 {
		s.maxBytes = max(w.MaxMessageBytes, MinMessageBytes)
	}
	heartbeat := s.HeartbeatInterval
	if w.HeartbeatMillis > 0 { // bounded: a hub's figure must neither overflow nor spin the agent
		heartbeat = time.Duration(min(max(w.HeartbeatMillis, minHeartbeat.Milliseconds()), maxHeartbeat.Milliseconds())) * time.Millisecond
	}
	offset := clockOffset(sent, recv, w.HubTime)
	if offset > loyalty.MaxClockOffset || offset < -loyalty.MaxClockOffset {
		// No real clock is that far off, and no delta may carry such an offset: a hub that says
		// so would make every sale at the till fail. The offset measured before stands.
		s.Logger.Warn("the hub's clock is beyond any real clock's error from this one; its time is ignored",
			slog.Int64("hub_time", w.HubTime), slog.Duration("offset", offset))
		offset = s.Status().ClockOffset
	} else {
		offset = s.offsets.add(recv.Sub(sent), offset)
	}
	s.update(func(st *Status) {
		st.Online = true
		st.Version = w.Version
		st.MaxBatch = w.MaxBatch
		st.ConnectedAt = recv
		st.LastError = ""
		st.Sessions++
		st.ClockOffset = offset
	})
	s.epoch = w.Epoch
	if w.ResendSince != 0 {
		s.resendSince = time.UnixMilli(w.ResendSince)
	}
	s.Logger.Info("connected to hub", slog.Int("version", w.Version), slog.Duration("clock_offset", s.Status().ClockOffset))
	return heartbeat, nil
}

// minHeartbeat and maxHeartbeat bound the heartbeat a hub's welcome asks for (the hub's own
// configuration allows 100 ms at the least).
const (
	minHeartbeat = 100 * time.Millisecond
	maxHeartbeat = time.Hour
)

// clockOffset estimates hub clock minus agent clock from a request sent at sent and answered at
// recv (agent clock) with the hub's clock reading hub: the hub read its clock halfway, on average.
func clockOffset(sent, recv time.Time, hub int64) time.Duration {
	mid := sent.Add(recv.Sub(sent) / 2)
	return time.UnixMilli(hub).Sub(mid)
}

func (s *clientSession) handle(ctx context.Context, b []byte) error {
	m, err := Decode(b)
	if err != nil {
		return err
	}
	switch m.Type {
	case TypeAck:
		if s.Faults.BeforeAck != nil {
			if err := s.Faults.BeforeAck(m.Ack); err != nil {
				return err
			}
		}
		if err := s.Handler.ApplyAck(ctx, m.Ack); err != nil {
			return fmt.Errorf("apply ack: %w", err)
		}
		var confirmed, dups int64
		for _, r := range m.Ack.Results {
			if r.Status == StatusDuplicate {
				dups++
			}
			if r.Status != StatusRejected {
				confirmed++
			} else {
				s.Logger.Error("hub rejected a delta; it is kept in the agent's rejected list",
					slog.String("delta", r.DeltaID), slog.String("code", r.Code), slog.String("reason", r.Message))
			}
		}
		s.update(func(st *Status) { st.LastSync = s.Now(); st.DeltasConfirmed += confirmed; st.Duplicates += dups })
		if s.inflight > 0 {
			s.inflight--
		}
		return s.pushMore(ctx)
	case TypeChanges:
		if err := s.Handler.ApplyChanges(ctx, m.Changes); err != nil {
			return fmt.Errorf("apply changes: %w", err)
		}
		s.cursor = m.Changes.Cursor
		s.pulling = false
		s.update(func(st *Status) { st.LastSync = s.Now() })
		if !m.Changes.More {
			for _, cl := range s.refreshes {
				cl.reply <- callResult{}
			}
			s.refreshes = nil
		}
		// A notify heard while this pull was on its way calls for another only if this answer
		// does not reach the change it announced.
		if m.Changes.More || s.wantPull || s.notified > s.cursor {
			// Sent now, after the notify came, the pull's snapshot holds its change: a notify
			// never calls for more than that one pull, even one that names a version the
			// database does not reach (a hub process ahead of a restored database).
			s.notified = 0
			return s.pull(ctx)
		}
		return nil
	case TypeNotify:
		switch {
		case m.Notify.Cursor <= s.cursor:
		case s.pulling || !s.initialDone:
			// A pull is on its way, or the session's first pull is still to come: its answer
			// may already reach this change (TypeChanges pulls again if it does not).
			s.notified = max(s.notified, m.Notify.Cursor)
		default:
			return s.pull(ctx)
		}
		return nil
	case TypeMember:
		cl := s.calls[m.ID]
		delete(s.calls, m.ID)
		err := s.Handler.ApplyMember(ctx, m.Member)
		if cl != nil {
			cl.reply <- callResult{m: m.Member, standing: m.Standing, err: err}
		}
		return err
	case TypeUnsubscribed:
		if cl := s.calls[m.ID]; cl != nil {
			delete(s.calls, m.ID)
			cl.reply <- callResult{}
		}
		return nil
	case TypePong:
		recv, sent := s.Now(), time.UnixMilli(m.Pong.SentAt)
		offset := clockOffset(sent, recv, m.Pong.HubTime)
		if recv.Before(sent) || offset > loyalty.MaxClockOffset || offset < -loyalty.MaxClockOffset {
			// Not an answer to a ping of ours (sent after it came back), or a hub clock beyond
			// any real clock's error: the welcome's rule, so that one bad pong cannot make every
			// sale at the till fail. The offset measured before stands.
			s.Logger.Warn("a pong's times are not a measurement of the hub's clock; ignored",
				slog.Int64("sent_at", m.Pong.SentAt), slog.Int64("hub_time", m.Pong.HubTime))
			return nil
		}
		offset = s.offsets.add(recv.Sub(sent), offset)
		s.update(func(st *Status) { st.ClockOffset = offset })
		return nil
	case TypeError:
		if cl := s.calls[m.ID]; m.ID != 0 && cl != nil {
			delete(s.calls, m.ID)
			cl.reply <- callResult{err: m.Error}
			return nil
		}
		return fmt.Errorf("hub ended the session: %w", m.Error)
	default:
		return fmt.Errorf("unexpected %s from hub", m.Type)
	}
}

// pull asks for the next page of changes unless one is in flight or the initial push is not done.
func (s *clientSession) pull(ctx context.Context) error {
	if s.pulling || !s.initialDone {
		s.wantPull = true
		return nil
	}
	s.pulling, s.wantPull = true, false
	s.nextID++
	unsent, err := s.Handler.Pending(ctx, s.pushedSeq, 1)
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	return s.send(ctx, &Message{Type: TypePull, ID: s.nextID, Pull: &Pull{Cursor: s.cursor, Limit: s.batchSize, Flushed: len(unsent) == 0}})
}

// pushMore sends outbox deltas not yet sent in this session, keeping at most Window pushes in
// flight. The first time it finds nothing left to send it makes the session's first pull.
func (s *clientSession) pushMore(ctx context.Context) error {
	for s.inflight < max(s.Window, 1) {
		batch, err := s.Handler.Pending(ctx, s.pushedSeq, s.batchSize)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		if err := s.push(ctx, batch); err != nil {
			return err
		}
	}
	if !s.initialDone && s.inflight < max(s.Window, 1) {
		s.initialDone = true
		return s.pull(ctx)
	}
	return nil
}

// push sends one batch, halving it until it fits the hub's message size limit.
func (s *clientSession) push(ctx context.Context, batch []Outgoing) error {
	for {
		deltas := make([]loyalty.Delta, len(batch))
		for i, o := range batch {
			deltas[i] = o.Delta
		}
		s.nextID++
		b, err := Encode(&Message{Type: TypePush, ID: s.nextID, Push: &Push{Deltas: deltas}})
		if err != nil {
			return err
		}
		if len(b) > s.maxBytes && len(batch) > 1 {
			batch = batch[:len(batch)/2]
			continue
		}
		if len(b) > s.maxBytes {
			// One delta larger than the hub takes can never go: the hub would end the session,
			// and the agent would send it again at every reconnect, holding up everything behind
			// it. It is set aside as the hub would set it, rejected, kept for review.
			o := batch[0]
			r := Result{DeltaID: o.Delta.ID, Status: StatusRejected, Code: loyalty.ETOOLARGE,
				Message: fmt.Sprintf("this change is %d bytes as a push, more than the hub takes (%d); it was not sent", len(b), s.maxBytes)}
			if err := s.Handler.ApplyAck(ctx, &Ack{Results: []Result{r}}); err != nil {
				return fmt.Errorf("apply ack: %w", err)
			}
			s.Logger.Error("a delta is larger than the hub takes; it is kept in the agent's rejected list",
				slog.String("delta", o.Delta.ID), slog.Int("bytes", len(b)), slog.Int("max", s.maxBytes))
			s.pushedSeq = o.Seq
			return nil
		}
		copies := 1
		if s.Faults.DuplicatePush {
			copies = 2
		}
		for range copies {
			if err := s.conn.Write(ctx, b); err != nil {
				return err
			}
			s.inflight++
		}
		s.pushedSeq = batch[len(batch)-1].Seq
		s.update(func(st *Status) { st.DeltasPushed += int64(len(batch)) })
		return nil
	}
}

func (s *clientSession) send(ctx context.Context, m *Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	if err := s.conn.Write(ctx, b); err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return nil
}

// IsSuperseded reports whether err is the hub ending the session because another connection
// for the same store took over (ESUPERSEDED).
func IsSuperseded(err error) bool {
	var e *loyalty.Error
	return errors.As(err, &e) && e.Code == loyalty.ESUPERSEDED
}

// IsRefusal reports whether err is the hub refusing the session (bad token, unknown version)
// rather than a network failure.
func IsRefusal(err error) bool {
	var e *loyalty.Error
	return errors.As(err, &e) && (e.Code == loyalty.EUNAUTHORIZED || e.Code == loyalty.EVERSION)
}
