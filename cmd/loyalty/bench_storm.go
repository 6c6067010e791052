package main

// The bench's simulated stores: real sync clients over outboxes kept in memory, for the
// reconnect storm; and idle websocket connections, for the hub's memory per connected agent.

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// stormStore is a simulated store: its credentials and, while it drains, its outbox.
type stormStore struct {
	id, token string
	outbox    *memOutbox
}

// memOutbox is a store's outbox kept in memory, the sync client's ClientHandler for simulated
// stores: a thousand stores are a thousand sync clients and connections against the hub, without
// a thousand SQLite replicas on the bench machine's disk, which would measure that disk rather
// than the hub. Acknowledged deltas leave it, as in the agent (a rejected one too: the agent
// keeps those apart); drained is closed when the last one has.
type memOutbox struct {
	mu       sync.Mutex
	out      []lsync.Outgoing // by Seq
	pending  map[string]bool  // ids not yet acknowledged
	head     int              // out[:head] are all acknowledged
	cursor   int64
	rejected string // the first rejection's reason
	drained  chan struct{}
}

var _ lsync.ClientHandler = (*memOutbox)(nil)

// newMemOutbox returns an outbox holding the n deltas mk makes, oldest first.
func newMemOutbox(n int, mk func(int) loyalty.Delta) *memOutbox {
	o := &memOutbox{out: make([]lsync.Outgoing, n), pending: make(map[string]bool, n), drained: make(chan struct{})}
	for i := range n {
		d := mk(i)
		o.out[i] = lsync.Outgoing{Seq: int64(i + 1), Delta: d}
		o.pending[d.ID] = true
	}
	return o
}

func (o *memOutbox) Cursor(context.Context) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cursor, nil
}

func (o *memOutbox) Pending(_ context.Context, after int64, limit int) ([]lsync.Outgoing, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := max(o.head, sort.Search(len(o.out), func(i int) bool { return o.out[i].Seq > after }))
	var batch []lsync.Outgoing
	for ; i < len(o.out) && len(batch) < limit; i++ {
		if o.pending[o.out[i].Delta.ID] {
			batch = append(batch, o.out[i])
		}
	}
	return batch, nil
}

func (o *memOutbox) PendingCount(context.Context) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int64(len(o.pending)), nil
}

func (o *memOutbox) ApplyAck(_ context.Context, ack *lsync.Ack) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range ack.Results {
		if !o.pending[r.DeltaID] {
			continue
		}
		delete(o.pending, r.DeltaID)
		if r.Status == lsync.StatusRejected && o.rejected == "" {
			o.rejected = r.Code + ": " + r.Message
		}
	}
	for o.head < len(o.out) && !o.pending[o.out[o.head].Delta.ID] {
		o.head++
	}
	if len(o.pending) == 0 {
		select {
		case <-o.drained:
		default:
			close(o.drained)
		}
	}
	return nil
}

func (o *memOutbox) ApplyChanges(_ context.Context, ch *lsync.Changes) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cursor = ch.Cursor
	return nil
}

func (o *memOutbox) ApplyMember(context.Context, *loyalty.Member) error { return nil }

// Epoch keeps nothing: the bench's hub is never restored from a backup.
func (o *memOutbox) Epoch(context.Context, int64, time.Time, time.Duration) error { return nil }

// drainStores starts a sync client for every store at once, over real websockets to hm, and
// returns how long until every store's outbox was empty. The clients are stopped, and the hub
// has ended their sessions, when it returns, so that what is measured next meets a quiet hub.
func drainStores(ctx context.Context, hm *HubMain, stores []stormStore, quiet *slog.Logger) (time.Duration, error) {
	url := "ws://" + hm.HTTP.ListenAddr() + "/v1/sync"
	dialer := &ws.Dialer{Options: ws.Options{ReadLimit: int64(hm.Config.Sync.MaxMessageBytes)}}
	run, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	clients := make([]*lsync.Client, len(stores))
	t0 := time.Now()
	for i, s := range stores {
		c := lsync.NewClient(url, s.id, s.token, dialer, s.outbox) // the agent's defaults: batches of 250, 4 in flight, backoff from 250 ms
		c.Logger, c.AgentVersion = quiet, version
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(run)
		}()
	}
	const limit = 30 * time.Minute
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	var err error
wait:
	for i, s := range stores {
		select {
		case <-s.outbox.drained:
		case <-deadline.C:
			n, _ := s.outbox.PendingCount(ctx)
			err = fmt.Errorf("store %s still had %d deltas to send after %s (its last sync error: %q)", s.id, n, limit, clients[i].Status().LastError)
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		}
	}
	elapsed := time.Since(t0)
	stop()
	wg.Wait()
	if err != nil {
		return 0, err
	}
	for _, s := range stores {
		if s.outbox.rejected != "" {
			return 0, fmt.Errorf("the hub rejected a delta of store %s: %s", s.id, s.outbox.rejected)
		}
	}
	return elapsed, waitFor(ctx, 5*time.Minute, func() (bool, string) {
		return hm.Sync.Sessions() == 0, "the hub to end the stores' sessions"
	})
}

// memSnapshot is the process's memory after collecting garbage (twice: objects with finalizers,
// such as closed sockets, go in the second), and its goroutines.
type memSnapshot struct {
	heapAlloc  int64 // live objects
	heapInuse  int64 // spans holding them, with the room between them
	stackInuse int64 // goroutine stacks
	goroutines int
}

func snapshotMem() memSnapshot {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSnapshot{int64(m.HeapAlloc), int64(m.HeapInuse), int64(m.StackInuse), runtime.NumGoroutine()}
}

// connCost is what a server holds per connection, from snapshots of n client connections made
// in this process: before they were made, with all open, once the server had closed its side, and
// once the clients had closed theirs too. Heap and goroutine stacks are each counted two ways, and
// the larger counts:
//   - what the process held more with every connection open than before, less the heap freed
//     when the clients closed (theirs alone: they run no goroutine). This counts what the server
//     keeps after a connection ended, such as the descriptor (and stack) of a dead goroutine,
//     which the runtime keeps for the next one;
//   - what the process held more with every connection open than once the server had closed its
//     side. This one is blind to that, but not to memory a connection took over from earlier
//     work (a dead goroutine's cached stack, room in a span).
//
// The heap is counted both as live objects (HeapAlloc) and as the spans holding them (HeapInuse,
// with the room between them), the larger again counting. Kernel socket buffers are not counted.
func connCost(before, open, serverClosed, clientsClosed memSnapshot, n int) (bytes int64, goroutines float64) {
	clientsAlloc := serverClosed.heapAlloc - clientsClosed.heapAlloc
	clientsInuse := serverClosed.heapInuse - clientsClosed.heapInuse
	heap := max(open.heapAlloc-before.heapAlloc-clientsAlloc, open.heapInuse-before.heapInuse-clientsInuse,
		open.heapAlloc-serverClosed.heapAlloc, open.heapInuse-serverClosed.heapInuse)
	stacks := max(open.stackInuse-before.stackInuse, open.stackInuse-serverClosed.stackInuse)
	return (heap + stacks) / int64(n), float64(open.goroutines-before.goroutines) / float64(n)
}

// idleConnBytes measures the memory the hub holds per idle connected agent, and its goroutines.
// Every store connects as an agent does (hello, then pulls until its replica is current) and then
// stays idle. The clients are bare websockets that read nothing more, so that nothing changes on
// their side while the hub's side is measured (connCost).
//
// The sessions are served by a second hub on the same database whose heartbeat is an hour: a
// client that reads nothing answers no pings, and the production heartbeat would drop it while
// a thousand others connect. The heartbeat changes when the hub pings, not what a session holds.
func idleConnBytes(ctx context.Context, hc HubConfig, stores []stormStore, quiet *slog.Logger) (int64, float64, error) {
	ic := hc
	ic.Listen = "127.0.0.1:0"
	ic.Sync.Heartbeat = time.Hour
	ih := &HubMain{Config: ic, Logger: quiet}
	if err := ih.Open(ctx); err != nil {
		return 0, 0, err
	}
	defer ih.Close()
	url := "ws://" + ih.HTTP.ListenAddr() + "/v1/sync"
	conns := make([]*websocket.Conn, len(stores))
	closeClients := func() {
		for i, c := range conns {
			if c != nil {
				c.Close()
				conns[i] = nil
			}
		}
	}
	defer closeClients()
	before := snapshotMem()
	err := parallel(len(stores), 16, func(i int) error {
		var err error
		conns[i], err = idleAgent(ctx, url, stores[i])
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	if n := ih.Sync.Sessions(); n != len(stores) {
		return 0, 0, fmt.Errorf("%d idle agents connected, but the hub has %d sessions", len(stores), n)
	}
	// Idle: every session has finished what the agents' hellos and pulls gave it to do (the
	// notifications of other stores' lease grants among them), on a machine however busy.
	if err := waitFor(ctx, 5*time.Minute, func() (bool, string) {
		n := ih.Sync.Busy()
		return n == 0, fmt.Sprintf("the hub's %d busy sessions to be idle", n)
	}); err != nil {
		return 0, 0, err
	}
	open := snapshotMem()
	for _, s := range stores {
		ih.Sync.Disconnect(s.id)
	}
	if err := waitFor(ctx, 5*time.Minute, func() (bool, string) {
		return ih.Sync.Sessions() == 0 && ih.HTTP.Connections() == 0 && runtime.NumGoroutine() <= before.goroutines,
			fmt.Sprintf("the hub to end the idle sessions (%d left, %d connections, %d goroutines, %d before)",
				ih.Sync.Sessions(), ih.HTTP.Connections(), runtime.NumGoroutine(), before.goroutines)
	}); err != nil {
		return 0, 0, err
	}
	hubClosed := snapshotMem()
	closeClients()
	b, g := connCost(before, open, hubClosed, snapshotMem(), len(stores))
	return b, g, nil
}

// idleAgent connects to the hub's sync endpoint as store s, says hello, pulls until its replica
// is current, and returns the connection, from which nothing more is read.
func idleAgent(ctx context.Context, url string, s stormStore) (_ *websocket.Conn, err error) {
	d := websocket.Dialer{HandshakeTimeout: time.Minute}
	c, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("idle agent %s: %w", s.id, err)
	}
	defer func() {
		if err != nil {
			c.Close()
			err = fmt.Errorf("idle agent %s: %w", s.id, err)
		}
	}()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	send := func(m *lsync.Message) error {
		b, err := lsync.Encode(m)
		if err != nil {
			return err
		}
		return c.WriteMessage(websocket.TextMessage, b)
	}
	recv := func(want string) (*lsync.Message, error) {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return nil, err
			}
			m, err := lsync.Decode(b)
			switch {
			case err != nil:
				return nil, err
			case m.Type == want:
				return m, nil
			case m.Type == lsync.TypeError:
				return nil, m.Error
			} // a notify: the pull below answers it
		}
	}
	hello := &lsync.Hello{Versions: lsync.Versions, Store: s.id, Token: s.token, AgentVersion: version, SentAt: time.Now().UnixMilli()}
	if err := send(&lsync.Message{Type: lsync.TypeHello, Hello: hello}); err != nil {
		return nil, err
	}
	if _, err := recv(lsync.TypeWelcome); err != nil {
		return nil, err
	}
	for id, cursor, more := uint64(1), int64(0), true; more; id++ {
		if err := send(&lsync.Message{Type: lsync.TypePull, ID: id, Pull: &lsync.Pull{Cursor: cursor, Limit: 500, Flushed: true}}); err != nil {
			return nil, err
		}
		m, err := recv(lsync.TypeChanges)
		if err != nil {
			return nil, err
		}
		cursor, more = m.Changes.Cursor, m.Changes.More
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}

// bareConnBytes measures, as idleConnBytes does, the server side of a bare gorilla websocket, as
// gorilla's own examples serve one: n clients connect to an HTTP server on 127.0.0.1 that upgrades
// them with 4 KB read and write buffers and reads each in its handler (connCost).
func bareConnBytes(ctx context.Context, n int) (int64, float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	up := websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	var mu sync.Mutex
	var server []*websocket.Conn
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		server = append(server, c)
		mu.Unlock()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	clients := make([]*websocket.Conn, n)
	closeClients := func() {
		for i, c := range clients {
			if c != nil {
				c.Close()
				clients[i] = nil
			}
		}
	}
	defer closeClients()
	before := snapshotMem()
	url := "ws://" + ln.Addr().String() + "/"
	if err := parallel(n, 16, func(i int) error {
		var err error
		clients[i], _, err = (&websocket.Dialer{HandshakeTimeout: time.Minute}).DialContext(ctx, url, nil)
		return err
	}); err != nil {
		return 0, 0, fmt.Errorf("bare websocket: %w", err)
	}
	served := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(server)
	}
	if err := waitFor(ctx, 5*time.Minute, func() (bool, string) { return served() == n, "the bare websocket server's connections" }); err != nil {
		return 0, 0, err
	}
	open := snapshotMem()
	mu.Lock()
	for _, c := range server {
		c.Close()
	}
	server = nil
	mu.Unlock()
	if err := waitFor(ctx, 5*time.Minute, func() (bool, string) {
		return runtime.NumGoroutine() <= before.goroutines, "the bare websocket server's handlers to return"
	}); err != nil {
		return 0, 0, err
	}
	serverClosed := snapshotMem()
	closeClients()
	b, g := connCost(before, open, serverClosed, snapshotMem(), n)
	return b, g, nil
}

// parallel calls fn(0) to fn(n-1), at most workers at a time, and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
