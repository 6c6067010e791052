package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// Several hub processes on one database (sessions.go, bus.go). Each test runs on either backend
// (backend_test.go). Two Hub values stand for two processes: on PostgreSQL each has a store (a
// connection pool) of its own, so that what passes between them goes through the database, as
// between processes; on SQLite, which one process uses, they share one store.

// otherHub returns a second hub process on h's database: its own Hub (its own ID) and, on
// PostgreSQL, its own store.
func otherHub(t *testing.T, h *hub.Hub) *hub.Hub {
	t.Helper()
	st := h.Store
	if onPostgres() {
		st = openStore(t, whereOf(t, h.Store))
	}
	o := hub.New(st)
	o.KEK, o.Logger, o.Now = h.KEK, slog.New(slog.NewTextHandler(io.Discard, nil)), h.Now
	if o.ID == h.ID {
		t.Fatalf("two hubs with the same id %q", o.ID)
	}
	return o
}

// run starts h (Hub.Start) until the test ends, and waits for its goroutines then.
func run(t *testing.T, h *hub.Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg gosync.WaitGroup
	h.Start(ctx, &wg)
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// testSession is a session of the sync server as a hub's Claim sees it; ended receives the cause
// of every End.
type testSession struct {
	*lsync.Session
	ended chan error
}

func newTestSession(tb testing.TB, store, remote string, start time.Time) testSession {
	ended := make(chan error, 8)
	return testSession{&lsync.Session{Store: store, Remote: remote, Start: start, Token: tokenOf(tb, store),
		End: func(c error) { ended <- c }}, ended}
}

// mustEnd waits for the session to be ended and returns why (biTimeout is a safety net).
func (s testSession) mustEnd(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(biTimeout):
		t.Fatalf("%s: the session of %s from %s was not ended", what, s.Store, s.Remote)
		return nil
	}
}

// mustLive checks that nothing ended the session so far.
func (s testSession) mustLive(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-s.ended:
		t.Fatalf("%s: the session of %s from %s was ended: %v", what, s.Store, s.Remote, err)
	default:
	}
}

func sessionRow(t *testing.T, h *hub.Hub, store string) hub.Session {
	t.Helper()
	var s hub.Session
	if err := h.Store.View(context.Background(), func(tx hub.Tx) error {
		var err error
		s, err = tx.Session(context.Background(), store)
		return err
	}); err != nil {
		t.Fatalf("session of %s: %v", store, err)
	}
	return s
}

func storeHealth(t *testing.T, h *hub.Hub, store string) hub.Health {
	t.Helper()
	ss, err := h.Stores(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.ID == store {
			return s.Health
		}
	}
	t.Fatalf("no store %s", store)
	return hub.Health{}
}

// TestSessions_NewestClaimWinsAcrossHubs: a store's session claimed through one hub process and
// then through another belongs to the second; the first process finds out when it renews and
// ends its session with ESUPERSEDED naming the new connection. The second session's start is
// after the first's even when the second hub's clock is behind. Only the owner writes the store
// disconnected: the first session's release leaves it connected.
func TestSessions_NewestClaimWinsAcrossHubs(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)

	first := newTestSession(t, "s1", "10.0.0.1:1111", t0)
	if err := a.Claim(ctx, first.Session); err != nil {
		t.Fatal(err)
	}
	row := sessionRow(t, a, "s1")
	if row.Owner != a.ID || row.Remote != "10.0.0.1:1111" || !row.Started.Equal(t0) {
		t.Fatalf("after a's claim: %+v, want owner %s, started %s", row, a.ID, t0)
	}
	if h := storeHealth(t, b, "s1"); !h.Connected {
		t.Errorf("b sees s1 %+v after a's claim, want connected", h)
	}
	second := newTestSession(t, "s1", "10.0.0.2:2222", t0.Add(-time.Hour)) // b's clock is an hour behind
	if err := b.Claim(ctx, second.Session); err != nil {
		t.Fatal(err)
	}
	row2 := sessionRow(t, b, "s1")
	if row2.Owner != b.ID || !row2.Started.After(row.Started) {
		t.Fatalf("after b's claim: %+v, want owner %s and a start after %s", row2, b.ID, row.Started)
	}

	// a does not listen (no Run): its renewal finds out.
	if err := a.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	cause := first.mustEnd(t, "a renewed after b took s1 over")
	if loyalty.ErrorCode(cause) != loyalty.ESUPERSEDED || !strings.Contains(cause.Error(), "10.0.0.2:2222") {
		t.Errorf("a ended its session with %v, want %s naming 10.0.0.2:2222", cause, loyalty.ESUPERSEDED)
	}
	a.Release(ctx, first.Session) // as the sync server does once the session ended
	if row := sessionRow(t, a, "s1"); row.Owner != b.ID {
		t.Errorf("after a released its old session: %+v, want it still b's", row)
	}
	for _, h := range []*hub.Hub{a, b} {
		if hl := storeHealth(t, h, "s1"); !hl.Connected {
			t.Errorf("after a released its old session, a hub sees s1 %+v: want connected (b holds it)", hl)
		}
	}
	if err := b.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	second.mustLive(t, "b renewed its own session")

	// b's session ends: b releases the row and writes the store disconnected.
	b.Release(ctx, second.Session)
	if row := sessionRow(t, b, "s1"); row.Owner != "" {
		t.Errorf("after b released: %+v, want no owner", row)
	}
	if h := storeHealth(t, a, "s1"); h.Connected {
		t.Errorf("a sees s1 %+v after b released it, want disconnected", h)
	}
}

// TestSessions_RenewalKeepsDeadlineAndHealth: renewing moves the deadline on and writes what
// pings changed (outbox, clock offset), which another hub process then shows.
func TestSessions_RenewalKeepsDeadlineAndHealth(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	a.SessionTTL = time.Minute
	s := newTestSession(t, "s1", "10.0.0.1:1111", t0)
	if err := a.Claim(ctx, s.Session); err != nil {
		t.Fatal(err)
	}
	before := sessionRow(t, a, "s1").Deadline
	if err := a.Seen(ctx, "s1", lsync.Health{Connected: true, Ping: true, At: t0, Outbox: 7, ClockOffsetMS: 1500}); err != nil {
		t.Fatal(err)
	}
	if h := storeHealth(t, b, "s1"); h.Outbox != 0 {
		t.Fatalf("b sees an outbox of %d before a renewed, want 0 (pings are not written)", h.Outbox)
	}
	a.SessionTTL = time.Hour
	if err := a.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	s.mustLive(t, "a renewed its own session")
	if after := sessionRow(t, a, "s1").Deadline; !after.After(before.Add(30 * time.Minute)) {
		t.Errorf("deadline %s after renewing with a TTL of an hour, was %s with a minute", after, before)
	}
	if h := storeHealth(t, b, "s1"); !h.Connected || h.Outbox != 7 || h.ClockOffsetMS != 1500 {
		t.Errorf("b sees s1 %+v after a renewed, want connected, outbox 7, clock offset 1500", h)
	}
	// A ping that says the outbox is empty and the clocks agree is news too: it was taken for a
	// connect's, which measures nothing, and the drained store went on showing 7 waiting.
	if err := a.Seen(ctx, "s1", lsync.Health{Connected: true, Ping: true, At: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Seen(ctx, "s1", lsync.Health{Connected: true, At: t0.Add(2 * time.Second)}); err != nil { // a connect: no news
		t.Fatal(err)
	}
	if err := a.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if h := storeHealth(t, b, "s1"); h.Outbox != 0 || h.ClockOffsetMS != 0 {
		t.Errorf("b sees s1 %+v after a ping of an empty outbox and no clock offset, want both 0", h)
	}
}

// TestSessions_RenewalEndsARotatedToken: a store's token replaced by another hub process whose
// event this one never heard (its event connection was down) ends the session this one holds at
// its next renewal, as the agent's old token would no longer open one; another store's session
// goes on.
func TestSessions_RenewalEndsARotatedToken(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	s1, s2 := newTestSession(t, "s1", "10.0.0.1:1111", t0), newTestSession(t, "s2", "10.0.0.2:2222", t0)
	for _, s := range []testSession{s1, s2} {
		if err := a.Claim(ctx, s.Session); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.RotateStoreToken(ctx, "s1"); err != nil { // a is not listening: the event is lost to it
		t.Fatal(err)
	}
	s1.mustLive(t, "before a renews")
	if err := a.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s1.mustEnd(t, "a renewed after s1's token was replaced"); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
		t.Errorf("s1's session ended with %v, want EUNAUTHORIZED", err)
	}
	s2.mustLive(t, "s2's token is unchanged")
}

// TestSessions_StaleDeadline: a hub process that stops renewing (it died) leaves a row whose
// deadline passes. The next renewal by another process ends it and shows the store disconnected;
// a new session claims the store anyway; and the first process, if it was only slow, ends its
// session when it next renews.
func TestSessions_StaleDeadline(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	a.SessionTTL = time.Millisecond
	dead := newTestSession(t, "s1", "10.0.0.1:1111", t0)
	if err := a.Claim(ctx, dead.Session); err != nil {
		t.Fatal(err)
	}
	srvWait(t, "b to end a's session once its deadline passed", func() (bool, string) {
		if err := b.RenewSessions(ctx); err != nil {
			t.Fatal(err)
		}
		row := sessionRow(t, b, "s1")
		return row.Owner == "", "s1's session: owner " + row.Owner
	})
	if h := storeHealth(t, b, "s1"); h.Connected {
		t.Errorf("s1 after its session expired: %+v, want disconnected", h)
	}

	// A stale row never blocks a store.
	fresh := newTestSession(t, "s1", "10.0.0.2:2222", t0)
	if err := b.Claim(ctx, fresh.Session); err != nil {
		t.Fatal(err)
	}
	if row := sessionRow(t, b, "s1"); row.Owner != b.ID {
		t.Errorf("after b claimed the stale store: %+v", row)
	}
	if h := storeHealth(t, b, "s1"); !h.Connected {
		t.Errorf("s1 after b's claim: %+v, want connected", h)
	}

	// a was only slow: it learns that it lost the session and ends it.
	if err := a.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if cause := dead.mustEnd(t, "a renewed late"); loyalty.ErrorCode(cause) != loyalty.ESUPERSEDED {
		t.Errorf("a ended its late session with %v, want %s (b holds the store now)", cause, loyalty.ESUPERSEDED)
	}
	fresh.mustLive(t, "a renewed late")

	// The same with nobody taking over: the late hub's session is ended as lost, not superseded.
	b.SessionTTL = time.Millisecond
	if err := b.RenewSessions(ctx); err != nil { // b's row now has the short deadline
		t.Fatal(err)
	}
	a.SessionTTL = time.Hour
	srvWait(t, "a to end b's session once its deadline passed", func() (bool, string) {
		if err := a.RenewSessions(ctx); err != nil {
			t.Fatal(err)
		}
		row := sessionRow(t, a, "s1")
		return row.Owner == "", "s1's session: owner " + row.Owner
	})
	if err := b.RenewSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if cause := fresh.mustEnd(t, "b renewed after its session expired"); loyalty.ErrorCode(cause) != loyalty.EUNAVAILABLE {
		t.Errorf("b ended its expired session with %v, want %s", cause, loyalty.EUNAVAILABLE)
	}
}

// TestSessions_TakeoverHeardAtOnce: a hub process that runs (Start) hears another's claim of a
// store it holds through the database's event, and ends its session without waiting for a
// renewal (an hour away here). Changes made through one process reach the other's OnChange, and a
// token replaced through one ends the store's session at the other.
func TestSessions_TakeoverHeardAtOnce(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	a.SessionTTL, b.SessionTTL = time.Hour, time.Hour
	versions := make(chan int64, 100)
	b.OnChange = func(v int64, _ []string) { versions <- v }
	rotated := make(chan string, 4)
	b.OnTokenRotated = func(store string) { rotated <- store }
	run(t, b)
	v0 := nextVersion(t, versions, 0) // b listens: it told its agents the current version

	held := newTestSession(t, "s1", "10.0.0.1:1111", t0)
	if err := b.Claim(ctx, held.Session); err != nil {
		t.Fatal(err)
	}
	taker := newTestSession(t, "s1", "10.0.0.2:2222", t0)
	if err := a.Claim(ctx, taker.Session); err != nil {
		t.Fatal(err)
	}
	if cause := held.mustEnd(t, "a took s1 over"); loyalty.ErrorCode(cause) != loyalty.ESUPERSEDED || !strings.Contains(cause.Error(), "10.0.0.2:2222") {
		t.Errorf("b ended its session with %v, want %s naming 10.0.0.2:2222", cause, loyalty.ESUPERSEDED)
	}
	taker.mustLive(t, "a took s1 over")

	// A kill switch through a: b's agents are told to pull.
	withProgram(t, a, func(p *loyalty.Program) { p.Rewards[0].Disabled = true })
	if v := nextVersion(t, versions, v0); v <= v0 {
		t.Errorf("b was told version %d after a's program change, want more than %d", v, v0)
	}

	// A token replaced through a ends the store's session at b.
	if _, err := a.RotateStoreToken(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	select {
	case store := <-rotated:
		if store != "s2" {
			t.Errorf("b ended the session of %s, want s2", store)
		}
	case <-time.After(biTimeout):
		t.Fatal("b did not hear that s2's token was replaced through a")
	}
}

// nextVersion waits for the next version OnChange reports after after (biTimeout is a safety
// net), skipping reports of after itself.
func nextVersion(t *testing.T, versions <-chan int64, after int64) int64 {
	t.Helper()
	for {
		select {
		case v := <-versions:
			if after == 0 || v > after {
				return v
			}
		case <-time.After(biTimeout):
			t.Fatalf("no change version after %d was reported", after)
			return 0
		}
	}
}

// TestSessions_PushRetriedOnAnotherHub: an agent whose hub died mid-push pushes the same batch
// again through another hub process (here both push it at once): each delta is applied once,
// the other push acknowledges it as a duplicate, and the balance counts it once.
func TestSessions_PushRetriedOnAnotherHub(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	var batch []loyalty.Delta
	var want int64
	for i := range 20 {
		d := earn("s1", "m1", int64(100+i*100))
		batch = append(batch, d)
		want += d.Points
	}
	before := balance(t, a, "m1")
	acks := make([]*lsync.Ack, 2)
	var wg gosync.WaitGroup
	for i, h := range []*hub.Hub{a, b} {
		wg.Go(func() {
			ack, err := h.Push(ctx, "s1", batch)
			if err != nil {
				t.Errorf("push through hub %d: %v", i, err)
				return
			}
			acks[i] = ack
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for j, d := range batch {
		applied := 0
		for _, ack := range acks {
			switch r := ack.Results[j]; r.Status {
			case lsync.StatusApplied:
				applied++
			case lsync.StatusDuplicate:
			default:
				t.Errorf("delta %s: %+v", d.ID, r)
			}
		}
		if applied != 1 {
			t.Errorf("delta %s applied %d times across the two hubs, want once", d.ID, applied)
		}
	}
	if got := balance(t, b, "m1"); got != before+want {
		t.Errorf("balance %d, want %d (each earn once)", got, before+want)
	}
	mustCheck(t, a)
}

// TestSessions_AgentsMovedBetweenHubs: two hub processes serving websockets on one database.
// A store's agent connected to hub a; another connection for the store reaches hub b (the agent
// reconnected there, or a second agent shares its token): a's session is told ESUPERSEDED at
// once, naming the new connection, through the database's event; b's carries on; and the store
// stays connected in both processes' view.
func TestSessions_AgentsMovedBetweenHubs(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	a.SessionTTL, b.SessionTTL = time.Hour, time.Hour // no renewal during the test: only the event tells
	_, token, err := a.CreateStore(ctx, "s9", "")
	if err != nil {
		t.Fatal(err)
	}
	sa, srvA := serveHub(t, a)
	_, srvB := serveHub(t, b)
	run(t, a)
	run(t, b)

	open := func(srv *hub.Server) *websocket.Conn {
		t.Helper()
		d := websocket.Dialer{HandshakeTimeout: biTimeout}
		c, resp, err := d.Dial(srv.SyncURL(), nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		resp.Body.Close()
		t.Cleanup(func() { c.Close() })
		wsSend(t, c, wsHello("s9", token))
		wsMustNext(t, c, lsync.TypeWelcome)
		return c
	}
	first := open(srvA)
	srvWait(t, "a's session claimed", func() (bool, string) {
		var owner string
		err := a.Store.View(ctx, func(tx hub.Tx) error {
			row, err := tx.Session(ctx, "s9")
			owner = row.Owner
			return err
		})
		return err == nil && owner == a.ID, fmt.Sprintf("owner %q, %v", owner, err)
	})
	second := open(srvB)
	m, err := wsNext(t, first)
	if err != nil {
		t.Fatalf("a closed the first session (%v) without saying why", err)
	}
	if m.Type != lsync.TypeError || m.Error.Code != loyalty.ESUPERSEDED || !strings.Contains(m.Error.Message, second.LocalAddr().String()) {
		t.Fatalf("first session: got %s %+v, want %s naming %s", m.Type, m.Error, loyalty.ESUPERSEDED, second.LocalAddr())
	}
	wsExpectAlive(t, second)
	srvWait(t, "a's session to end", func() (bool, string) { return sa.Sessions() == 0, "still there" })
	if row := sessionRow(t, a, "s9"); row.Owner != b.ID {
		t.Errorf("s9's session %+v, want b's", row)
	}
	for name, h := range map[string]*hub.Hub{"a": a, "b": b} {
		if hl := storeHealth(t, h, "s9"); !hl.Connected {
			t.Errorf("hub %s sees s9 %+v after its session moved to b, want connected", name, hl)
		}
	}
}

// serveHub serves h's sync endpoint and API on a loopback port until the test ends, wired as
// cmd/loyalty wires a hub.
func serveHub(t *testing.T, h *hub.Hub) (*lsync.Server, *hub.Server) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	s := lsync.NewServer(h)
	s.Logger = log
	h.OnChange, h.OnTokenRotated = s.NotifyStores, s.Disconnect
	up := &ws.Upgrader{}
	srv := &hub.Server{Hub: h, Sync: s, Addr: "127.0.0.1:0", AdminKey: biAdminKey, Logger: log, Upgrade: up.Upgrade}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return s, srv
}

// TestEventsPostgres: the events between hub processes on PostgreSQL (LISTEN/NOTIFY), between two
// hubs with a connection pool each: a change committed through one reaches the other's OnChange;
// a claim through one ends the other's session at once; and when the listening connection is
// lost, the hub listens again and then tells its agents the current version (it may have missed
// changes) and checks the sessions it holds.
func TestEventsPostgres(t *testing.T) {
	if !onPostgres() {
		t.Skipf("needs a PostgreSQL server: run with %s=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable go test ./hub/ -run Postgres", postgresEnv)
	}
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	if a.Store == b.Store {
		t.Fatal("the two hubs share a store; want a pool each")
	}
	a.SessionTTL, b.SessionTTL = time.Hour, time.Hour
	versions := make(chan int64, 100)
	b.OnChange = func(v int64, _ []string) { versions <- v }
	run(t, b)
	v0 := nextVersion(t, versions, 0)

	if _, err := a.CreateMember(ctx, loyalty.Member{ID: "m9", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	v1 := currentVersion(t, a)
	if v := nextVersion(t, versions, v0); v != v1 {
		t.Errorf("b was told version %d after a's new member, want %d", v, v1)
	}

	held := newTestSession(t, "s1", "10.0.0.1:1111", t0)
	if err := b.Claim(ctx, held.Session); err != nil {
		t.Fatal(err)
	}

	// b's listening connection is cut; at once a takes s1 over and changes a balance. b listens
	// again 100ms later: it may or may not have missed their events.
	db := openRaw(t, whereOf(t, a.Store))
	old := listenerPID(t, db, 0)
	if _, err := db.Exec(`SELECT pg_terminate_backend(?)`, old); err != nil {
		t.Fatal(err)
	}
	taker := newTestSession(t, "s1", "10.0.0.2:2222", t0)
	if err := a.Claim(ctx, taker.Session); err != nil {
		t.Fatal(err)
	}
	pushOK(t, a, "s1", earn("s1", "m1", 500))
	v2 := currentVersion(t, a)
	if cause := held.mustEnd(t, "a took s1 over while b's listening connection was cut"); loyalty.ErrorCode(cause) != loyalty.ESUPERSEDED {
		t.Errorf("b ended its session with %v, want %s", cause, loyalty.ESUPERSEDED)
	}
	if v := nextVersion(t, versions, v1); v != v2 {
		t.Errorf("b told its agents version %d after listening again, want %d", v, v2)
	}
	listenerPID(t, db, old)

	// Cut again with nothing changing: listening again, b tells its agents the current version
	// although it told them already (it cannot know what it missed).
	drain(versions)
	old = listenerPID(t, db, 0)
	if _, err := db.Exec(`SELECT pg_terminate_backend(?)`, old); err != nil {
		t.Fatal(err)
	}
	listenerPID(t, db, old)
	select {
	case v := <-versions:
		if v != v2 {
			t.Errorf("after listening again b told its agents version %d, want the current %d", v, v2)
		}
	case <-time.After(biTimeout):
		t.Fatal("after listening again b did not tell its agents the current version")
	}
}

// listenerPID waits until one connection listens for the hub's events on db, other than the one
// with process id not (0: any), and returns its process id.
func listenerPID(t *testing.T, db rawDB, not int) int {
	t.Helper()
	var pid int
	srvWait(t, "a connection listening for the hub's events", func() (bool, string) {
		var n int
		err := db.QueryRow(`SELECT count(*), COALESCE(max(pid), 0) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'loyalty hub events' AND pid <> ?`, not).Scan(&n, &pid)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1, fmt.Sprintf("%d such connections", n)
	})
	return pid
}

func drain(c <-chan int64) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
