package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/pgtest"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// These tests need a PostgreSQL server on which they may create databases; each test gets its
// own, dropped when it ends. The hub's whole test suite runs on PostgreSQL the same way
// (hub/backend_test.go):
//
//	LOYALTY_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' go test ./hub/...
const postgresEnv = pgtest.Env

// newDatabase creates an empty database for t and returns its URL.
func newDatabase(t *testing.T) string {
	t.Helper()
	pgtest.Skip(t, "go test ./hub/...")
	return pgtest.Database(t, "loyalty_pg_test_", "")
}

func open(t *testing.T, where string) *Store {
	t.Helper()
	s, err := Open(context.Background(), where)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func version(t *testing.T, s *Store) int64 {
	t.Helper()
	var v int64
	if err := s.View(context.Background(), func(tx hub.Tx) error {
		var err error
		v, err = tx.CurrentVersion(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// The migrations run once, whoever opens the database first, and are recorded; opening again
// changes nothing.
func TestPostgresMigrations(t *testing.T) {
	where := newDatabase(t)
	var wg sync.WaitGroup
	stores := make([]*Store, 3)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), where)
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
		}()
	}
	wg.Wait()
	for _, s := range stores {
		if s != nil {
			s.Close()
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	s := open(t, where)
	var names []string
	rows, err := s.pool.Query(context.Background(), `SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	if names, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	files, _ := migrations.ReadDir("migrations")
	if len(names) != len(files) || names[0] != "0001_init.sql" {
		t.Errorf("schema_migrations holds %v, want one row per file of migrations/ (%d)", names, len(files))
	}
	var e hub.EpochInfo
	if err := s.View(context.Background(), func(tx hub.Tx) error {
		var err error
		e, err = tx.Epoch(context.Background())
		return err
	}); err != nil || e.Epoch <= 0 || e.Epoch >= 1<<53 || !e.RestoredAt.IsZero() {
		t.Errorf("a new database's epoch: %+v, %v; want a random number from 1 to 2^53, never restored", e, err)
	}
}

// bump commits a change of the version counter from a connection of its own, as a writer that
// does not take the writer lock would (the Store's writers all take it).
func bump(t *testing.T, where string) {
	t.Helper()
	c, err := pgx.Connect(context.Background(), where)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), `UPDATE counters SET value = value + 1 WHERE name = 'version'`); err != nil {
		t.Fatal(err)
	}
}

// A transaction that meets a concurrent commit of the version counter is refused by PostgreSQL
// and run again from the start; the second run sees the other commit and takes the next version.
func TestPostgresUpdateRetriesASerializationFailure(t *testing.T) {
	where := newDatabase(t)
	s := open(t, where)
	ctx := context.Background()
	attempts := 0
	var got int64
	err := s.Update(ctx, func(tx hub.Tx) error {
		attempts++
		if _, err := tx.CurrentVersion(ctx); err != nil { // the transaction's snapshot
			return err
		}
		if attempts == 1 {
			bump(t, where) // another transaction takes a version and commits
		}
		var err error
		got, err = tx.NextVersion(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 || got != 2 || version(t, s) != 2 {
		t.Errorf("%d attempts, version %d, now %d; want 2 attempts that end with version 2", attempts, got, version(t, s))
	}
}

// A transaction refused every time gives up after maxAttempts, with an error that says so and
// wraps PostgreSQL's.
func TestPostgresUpdateGivesUp(t *testing.T) {
	where := newDatabase(t)
	s := open(t, where)
	ctx := context.Background()
	attempts := 0
	err := s.Update(ctx, func(tx hub.Tx) error {
		attempts++
		if _, err := tx.CurrentVersion(ctx); err != nil {
			return err
		}
		bump(t, where)
		_, err := tx.NextVersion(ctx)
		return err
	})
	if attempts != maxAttempts || err == nil || !retryable(err) || !strings.Contains(err.Error(), "giving up") {
		t.Errorf("%d attempts, %v; want %d attempts and an error that gives up", attempts, err, maxAttempts)
	}
	if v := version(t, s); v != maxAttempts {
		t.Errorf("version %d, want %d (the other transaction's commits only)", v, maxAttempts)
	}
}

// Writers of two hub processes on one database queue for the writer lock instead of colliding:
// the second one begins once the first has committed, sees its version, and runs once. Without
// the lock it would meet the first one's locked counter row and be refused and run again.
func TestPostgresWritersQueue(t *testing.T) {
	where := newDatabase(t)
	a, b := open(t, where), open(t, where)
	ctx := context.Background()
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- a.Update(ctx, func(tx hub.Tx) error {
			if _, err := tx.NextVersion(ctx); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	attempts := 0
	var got int64
	second := make(chan error, 1)
	go func() {
		second <- b.Update(ctx, func(tx hub.Tx) error {
			attempts++
			var err error
			got, err = tx.NextVersion(ctx)
			return err
		})
	}()
	// The second writer waits on the lock (the database shows it waiting) while the first holds it.
	for waiting := 0; waiting == 0; {
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-second:
			t.Fatalf("the second writer ended (%v) while the first held the lock", err)
		default:
		}
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || got != 2 {
		t.Errorf("the second writer ran %d times and took version %d; want once, version 2", attempts, got)
	}
}

// withParam adds a parameter (name=value) to a connection URL's query.
func withParam(url, param string) string {
	if strings.Contains(url, "?") {
		return url + "&" + param
	}
	return url + "?" + param
}

// A hub process that stops in the middle of a write transaction (frozen, or cut off from the
// database) loses the writer lock when its transaction has waited on it for
// idle_in_transaction_session_timeout: the other hub processes' writes go on, and the stopped
// transaction is rolled back. The lanes' connections carry the settings (laneSettings) unless
// the connection URL sets them; here a URL sets the timeout to 1 s for the hub that stops.
func TestPostgresFrozenWriterLosesTheLock(t *testing.T) {
	where := newDatabase(t)
	a, b := open(t, withParam(where, "idle_in_transaction_session_timeout=1s")), open(t, where)
	ctx := context.Background()
	conn, err := b.take(ctx, &b.writes)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"idle_in_transaction_session_timeout": "30s", "tcp_user_timeout": "60000"} {
		var got string
		if err := conn.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&got); err != nil || got != want {
			t.Errorf("a lane's %s is %q (%v), want %q", name, got, err, want)
		}
	}
	b.give(conn, &b.writes)

	inside, release := make(chan struct{}), make(chan struct{})
	frozen := make(chan error, 1)
	var once sync.Once
	go func() {
		frozen <- a.Update(ctx, func(tx hub.Tx) error {
			if _, err := tx.NextVersion(ctx); err != nil {
				return err
			}
			once.Do(func() { close(inside) })
			<-release // the hub stops here
			return nil
		})
	}()
	<-inside
	// A generous bound, so that the test fails instead of hanging; PostgreSQL ends the stopped
	// transaction after 1 s.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var got int64
	if err := b.Update(wctx, func(tx hub.Tx) error {
		var err error
		got, err = tx.NextVersion(wctx)
		return err
	}); err != nil {
		t.Fatalf("another hub's write while one hub is stopped mid-transaction: %v", err)
	}
	close(release)
	if err := <-frozen; err == nil {
		t.Error("the stopped hub's transaction committed after PostgreSQL ended it")
	}
	if got != 1 || version(t, b) != 1 {
		t.Errorf("the other hub took version %d, now %d; want 1: the stopped transaction's version rolled back", got, version(t, b))
	}
}

// A hub process frozen in the moment between taking the writer lock and BEGIN (or between
// COMMIT and giving the lock back) loses the lock when its session has been idle for
// idle_session_timeout (PostgreSQL 14 and later): the other hub processes' writes go on. When it
// resumes, its lane's dead connection is dropped and its next write works. Here a URL sets the
// timeout to 1 s for the hub that stops.
func TestPostgresWriterFrozenOutsideATransaction(t *testing.T) {
	where := newDatabase(t)
	a, b := open(t, withParam(where, "idle_session_timeout=1s")), open(t, where)
	ctx := context.Background()
	var server int
	if err := b.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&server); err != nil {
		t.Fatal(err)
	}
	if server < 140000 {
		t.Skipf("PostgreSQL %d has no idle_session_timeout (14 and later do); the lanes go without it", server)
	}
	conn, err := b.take(ctx, &b.writes)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := conn.QueryRow(ctx, `SELECT current_setting('idle_session_timeout')`).Scan(&got); err != nil || got != laneIdleSession {
		t.Errorf("a lane's idle_session_timeout is %q (%v), want %q", got, err, laneIdleSession)
	}
	b.give(conn, &b.writes)
	var plain string
	if err := b.pool.QueryRow(ctx, `SELECT current_setting('idle_session_timeout')`).Scan(&plain); err != nil || plain != "0" {
		t.Errorf("the pool's idle_session_timeout is %q (%v), want 0: only the lanes end idle sessions", plain, err)
	}

	frozen, err := a.take(ctx, &a.writes) // the hub stops here, the lock held, no transaction begun
	if err != nil {
		t.Fatal(err)
	}
	// A generous bound, so that the test fails instead of hanging; PostgreSQL ends the stopped
	// session after 1 s.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := b.Update(wctx, func(tx hub.Tx) error { _, err := tx.NextVersion(wctx); return err }); err != nil {
		t.Fatalf("another hub's write while one hub is stopped holding the lock: %v", err)
	}
	a.give(frozen, &a.writes) // it resumes: its connection is gone
	if err := a.Update(wctx, func(tx hub.Tx) error { _, err := tx.NextVersion(wctx); return err }); err != nil {
		t.Fatalf("the resumed hub's next write: %v", err)
	}
	if v := version(t, b); v != 2 {
		t.Errorf("version %d, want 2: one write of each hub", v)
	}
}

// Errors that are not PostgreSQL refusing a transaction are returned at once; View is read-only.
func TestPostgresNoRetryForOtherErrors(t *testing.T) {
	s := open(t, newDatabase(t))
	ctx := context.Background()
	attempts := 0
	err := s.Update(ctx, func(tx hub.Tx) error {
		attempts++
		_, err := tx.Member(ctx, "nobody")
		return err
	})
	if attempts != 1 || loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("%d attempts, %v; want one, ENOTFOUND", attempts, err)
	}
	err = s.View(ctx, func(tx hub.Tx) error { _, err := tx.NextVersion(ctx); return err })
	if err == nil || version(t, s) != 0 {
		t.Errorf("View wrote: %v", err)
	}
}

// Concurrent writers through the hub each get their own change versions, and the change feed
// hands every member out once, in version order.
func TestPostgresConcurrentWriters(t *testing.T) {
	h := newHub(t, open(t, newDatabase(t)))
	ctx := context.Background()
	const writers, each = 4, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("w%d-%d", w, i), HomeStore: "s1"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	var last int64
	for cursor := int64(0); ; {
		ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ch.Members {
			if seen[m.ID] || m.Version <= last {
				t.Fatalf("member %s at version %d after version %d (seen before: %v)", m.ID, m.Version, last, seen[m.ID])
			}
			seen[m.ID], last = true, m.Version
		}
		cursor = ch.Cursor
		if !ch.More {
			break
		}
	}
	if len(seen) != writers*each {
		t.Errorf("the feed handed out %d members, want %d", len(seen), writers*each)
	}
}

// Text PostgreSQL cannot store (a NUL character, which SQLite stores) is refused without
// aborting the transaction; a delta holding it is rejected as invalid before the batch's insert
// (loyalty.ValidText), so the rest of its push is applied at once, and is kept whole, so that its
// store does not push it for ever.
func TestPostgresTextItCannotStore(t *testing.T) {
	s := open(t, newDatabase(t))
	ctx := context.Background()
	err := s.Update(ctx, func(tx hub.Tx) error {
		if _, err := tx.Member(ctx, "m\x00"); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
			return fmt.Errorf("looking up an id with a NUL: %v, want ENOTFOUND", err)
		}
		if err := tx.InsertMember(ctx, loyalty.Member{ID: "m1", Name: "A\x00nn"}); loyalty.ErrorCode(err) != loyalty.EINVALID {
			return fmt.Errorf("a name with a NUL: %v, want EINVALID", err)
		}
		return tx.InsertMember(ctx, loyalty.Member{ID: "m1", Name: "Ann", Version: 1}) // the transaction goes on
	})
	if err != nil {
		t.Fatal(err)
	}

	h := newHub(t, s)
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m2", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Terminal: "till\x001", Member: "m2", Kind: loyalty.KindEarn,
		Points: 12, Amount: 1299, Currency: "EUR", RuleVersion: 1, OccurredAt: h.Now()}
	ok := d
	ok.ID, ok.Terminal = loyalty.NewDeltaID(), "till-1"
	ack, err := h.Push(ctx, "s1", []loyalty.Delta{ok, d})
	if err != nil {
		t.Fatalf("the push failed as a whole (the store would push it again for ever): %v", err)
	}
	if r := ack.Results[0]; r.Status != lsync.StatusApplied {
		t.Fatalf("the same delta without the NUL: %+v, want it applied", r)
	}
	if r := ack.Results[1]; r.Status != lsync.StatusRejected || r.Code != loyalty.EINVALID {
		t.Fatalf("result %+v, want it rejected (EINVALID)", r)
	}
	rs, err := h.Rejections(ctx, 10)
	if err != nil || len(rs) != 1 || rs[0].Delta.Terminal != d.Terminal {
		t.Fatalf("rejections %+v, %v; want the whole delta kept", rs, err)
	}
}

// Backup is hub/sqlite's; on PostgreSQL it is refused, naming pg_dump.
func TestPostgresBackupRefused(t *testing.T) {
	s := open(t, newDatabase(t))
	err := s.Backup(context.Background(), "/tmp/hub-backup.db")
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("Backup = %v, want EINVALID naming pg_dump", err)
	}
}

// Path names the database for messages without its password. (No server needed.)
func TestPostgresPathHasNoPassword(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://ann:s3cret@db.example:6432/loyalty?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(cfg), "postgres://ann@db.example:6432/loyalty"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

// newHub returns an initialised hub on s with store s1, at a fixed time, its feed pulled once.
func newHub(t *testing.T, s *Store) *hub.Hub {
	t.Helper()
	ctx := context.Background()
	h := hub.New(s)
	h.KEK = seal.NewRandom()
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	if err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.CreateStore(ctx, "s1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	return h
}

// A bookkeeping transaction (the sync sessions' rows) runs beside the writer rather than after
// it: a long write cannot hold up the renewal of live sessions.
func TestPostgresBookkeepingRunsBesideTheWriter(t *testing.T) {
	s := open(t, newDatabase(t))
	ctx := context.Background()
	inside, release := make(chan struct{}), make(chan struct{})
	writer := make(chan error, 1)
	go func() {
		writer <- s.Update(ctx, func(tx hub.Tx) error {
			if _, err := tx.NextVersion(ctx); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	err := s.Update(hub.Bookkeeping(ctx), func(tx hub.Tx) error {
		_, err := tx.ClaimSession(ctx, hub.Session{Store: "s1", Owner: "hub-a", Started: time.Now()}, time.Minute)
		return err
	})
	close(release) // only now: had the bookkeeping waited for the writer, it would never have ended
	if err != nil {
		t.Fatalf("a session claim while a writer holds the lock: %v", err)
	}
	if err := <-writer; err != nil {
		t.Fatal(err)
	}
}

// The writer never waits for the sessions' bookkeeping on a store's row: a renewal writes the
// health of every store its hub holds, a pull moves the store's flushed floor. When both were
// columns of one row, the writer (holding the lock all hubs' writes take turns on) waited for the
// renewal's commit, and was then refused and ran again.
func TestPostgresStoreHealthApartFromTheWriter(t *testing.T) {
	s := open(t, newDatabase(t))
	h := newHub(t, s)
	ctx := context.Background()
	now := h.Now()
	inside, release := make(chan struct{}), make(chan struct{})
	books := make(chan error, 1)
	go func() {
		books <- s.Update(hub.Bookkeeping(ctx), func(tx hub.Tx) error {
			if err := tx.SetStoreHealth(ctx, "s1", hub.Health{Connected: true, LastSeen: now, Outbox: 3}); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	// A generous bound, so that the test fails instead of hanging: the writer does not wait at all.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	attempts := 0
	err := s.Update(wctx, func(tx hub.Tx) error {
		attempts++
		return tx.MarkFlushed(wctx, "s1", now.Add(time.Hour))
	})
	close(release) // only now: had the writer waited for the bookkeeping, it would have timed out
	if err != nil || attempts != 1 {
		t.Fatalf("the writer's write of s1 while a renewal holds its health: %v after %d attempts, want one that succeeds", err, attempts)
	}
	if err := <-books; err != nil {
		t.Fatal(err)
	}
	var info hub.StoreInfo
	if err := s.View(ctx, func(tx hub.Tx) error {
		var err error
		info, err = tx.StoreInfo(ctx, "s1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !info.Health.Connected || info.Health.Outbox != 3 || !info.FlushedAt.Equal(now.Add(time.Hour)) {
		t.Errorf("s1 reads %+v; want both writes: connected with 3 in its outbox, flushed an hour on", info)
	}
}

// TestPostgresIngestReadsPlannedPerCall: the ingest's reads whose best plan depends on the
// ledger's size (the batch's known delta ids, its members' qualifying totals) never run a generic
// plan, which PostgreSQL may cache after five calls of a prepared statement: one made on a new
// database, while the tables were empty, would scan the ledger whole at every batch until the next
// ANALYZE.
func TestPostgresIngestReadsPlannedPerCall(t *testing.T) {
	s := open(t, newDatabase(t))
	ctx := context.Background()
	upTo := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	err := s.Update(ctx, func(htx hub.Tx) error {
		if _, err := htx.CurrentVersion(ctx); err != nil { // a statement that is prepared, for the check below
			return err
		}
		for range 10 {
			if _, err := htx.DeltaHashes(ctx, []string{"d1", "d2"}); err != nil {
				return err
			}
			if _, err := htx.QualifyingOf(ctx, []string{"m1", "m2"}, loyalty.BasisSpend, upTo.AddDate(-1, 0, 0), upTo); err != nil {
				return err
			}
		}
		// Both reads ran on this transaction's connection; its prepared statements are listed here
		// (generic_plans: PostgreSQL 14 and later). The connection prepares what it runs, or the
		// check below would pass whatever the reads do.
		var prepared int
		if err := htx.(*tx).tx.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = $1`, currentVersionSQL).Scan(&prepared); err != nil {
			return err
		}
		if prepared != 1 {
			t.Fatalf("the connection prepared the change version's read %d times, want once: statements are not prepared here", prepared)
		}
		rows, err := htx.(*tx).tx.Query(ctx, `SELECT statement, generic_plans FROM pg_prepared_statements
			WHERE (statement LIKE '%FROM deltas WHERE id = ANY%' OR statement LIKE '%FROM member_qualifying WHERE member = ANY%')
				AND statement NOT LIKE '%pg_prepared_statements%'`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var q string
			var generic int64
			if err := rows.Scan(&q, &generic); err != nil {
				return err
			}
			t.Errorf("an ingest read is a prepared statement (%d generic plans): %.80s", generic, q)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPostgresIndexedLookups: the search by name reads member_names' trigram index, and a
// member's rejections (their erasure, their export) rejections_member: the queries as the code
// writes them, planned with sequential scans off, as a test's tables are too small for the
// planner to choose an index on its own.
func TestPostgresIndexedLookups(t *testing.T) {
	s := open(t, newDatabase(t))
	ctx := context.Background()
	err := s.View(ctx, func(htx hub.Tx) error {
		conn := htx.(*tx).tx
		if _, err := conn.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		byStore, storeArgs := searchMembersQuery(hub.MemberFilter{HomeStore: "s1"}, "m1", 100)
		byTier, tierArgs := searchMembersQuery(hub.MemberFilter{Tier: "gold", HomeStore: "s1", CreatedSince: time.Unix(1, 0)}, "m1", 100)
		for _, c := range []struct {
			q     string
			args  []any
			index string
		}{
			{`SELECT m.id FROM members m WHERE ` + strings.ReplaceAll(nameIn, "$?", "$1"), []any{"%ann%"}, "member_names_trigrams"},
			{`SELECT delta_id FROM rejections WHERE ` + rejectionMember + ` = $1`, []any{"m1"}, "rejections_member"},
			// By home store, alone or with a tier: its index, in id order after the page before, no sort.
			{byStore, storeArgs, "Index Cond: ((home_store = 's1'::text) AND (id > 'm1'::text))"},
			{byTier, tierArgs, "Index Cond: ((home_store = 's1'::text) AND (id > 'm1'::text))"},
		} {
			rows, err := conn.Query(ctx, `EXPLAIN `+c.q, c.args...)
			if err != nil {
				return err
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					return err
				}
				plan = append(plan, line)
			}
			rows.Close()
			if p := strings.Join(plan, "\n"); !strings.Contains(p, c.index) || strings.Contains(p, "Sort") {
				t.Errorf("%s:\n%s\nwant %s", c.q, p, c.index)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
