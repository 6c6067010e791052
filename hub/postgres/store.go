// Package postgres is the hub's storage on PostgreSQL (github.com/jackc/pgx/v5): the same
// hub.Store as hub/sqlite, with the same behaviour, for a hub whose ledger outgrows one file.
//
// # Transactions
//
// Update runs its function in a SERIALIZABLE transaction and runs it again, from the start, when
// PostgreSQL refuses to commit it because of a concurrent transaction (serialization failure,
// SQLSTATE 40001, or deadlock, 40P01): at most maxAttempts times, with a short random pause
// between attempts. A retry is safe only because the hub's transaction functions do nothing
// outside the transaction: whatever they change in memory (counters, maps, callbacks, messages
// sent) would be done once per attempt. They must stay free of such side effects, or make them
// only after Update returns.
//
// View runs its function in a READ ONLY, REPEATABLE READ transaction: one snapshot, never
// refused for serialization.
//
// # One writer at a time
//
// Every write transaction, in every hub process on the database, first takes one advisory lock
// (writerLock) on its connection, before it begins, and gives it back after it ends: writers
// queue for the lock instead of colliding. Within a process they queue in memory first, so that
// one connection per process waits on the database and the others stay free for reads. Without it, the transactions that take a change
// version (nearly all: see below) collided on the counter row and were refused and retried until
// some gave up, under load (a reconnect storm: a push refused ten times in a row was set aside
// as a rejection for an operator). The transaction begins once the lock is held, so its snapshot
// already holds the previous writer's commit and nothing concurrent is left to refuse it; reads
// (View) take no lock and run beside the writer, on connections of their own: the lanes have a
// pool of their own, a connection each, so that a writer never waits for a connection behind the
// reads of a thousand sessions. The sync sessions' bookkeeping transactions
// (hub.Bookkeeping), which draw no version, run beside the writer too, one at a time among
// themselves (a lane of their own, bookkeepingLock): a long write must not hold up the renewal of
// live sessions until other hub processes take them for dead, and a thousand agents connecting at
// once must not refuse each other's claims. The writer and one bookkeeping transaction may still
// meet on a row; the one PostgreSQL refuses runs again. Writes are so as serial as on SQLite: the hub
// makes them few and large (a push batch, several stores' batches in one group commit, jobs in
// batches of 500 members), and spreads the reads (pulls, lookups, reports) over its processes.
//
// # The change version
//
// The hub orders every change agents must see with one counter (hub.Tx.NextVersion), and the
// change feed hands members out by version: a pull that saw version n must already see every
// change stamped before n. Here the counter is one row, updated by every transaction that takes
// a version. Two such transactions cannot both commit out of order: the writer lock (above)
// lets one write at a time, and even without it the second one's update would wait for the first
// to end and then be refused (40001) and retried. So versions commit in the order they are
// taken, and every snapshot holds a prefix of them (docs/PROTOCOL.md, "The change feed under
// concurrent writers"). A busier hub than one writer can serve would need a sequence and a
// visibility horizon for the feed instead (docs/SCALING.md).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

//go:embed migrations/*.sql
var migrations embed.FS

// maxAttempts is how many times Update runs a transaction that keeps meeting concurrent ones.
const maxAttempts = 10

// Store implements hub.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool // reads (View), events (Listen), migrations
	// lanes holds the connections of the write lanes, one per lane: apart from the reads' pool,
	// so that a writer never queues for a connection behind hundreds of pulls.
	lanes *pgxpool.Pool
	name  string // the database, for messages: host, port and name, no credentials
	// The writer, and the sessions' bookkeeping beside it (hub.Bookkeeping): each one at a time
	// across the hub processes on the database.
	writes, books lane
}

var _ hub.Store = (*Store)(nil)
var _ hub.Analyzer = (*Store)(nil)
var _ hub.Tx = (*tx)(nil)

// Analyze updates the planner's statistics of the tables a bulk load fills and every sale
// reads or writes (hub.Analyzer). ANALYZE reads a sample of each table's rows, not all of them.
func (s *Store) Analyze(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `ANALYZE members, member_stores, deltas, member_qualifying`)
	return err
}

// Open connects to the PostgreSQL database at url (postgres://user@host:port/dbname?…, or any
// connection string pgx accepts, pool settings such as pool_max_conns included) and migrates
// it. The database must exist.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: the connection URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	name := describe(cfg.ConnConfig)
	var serverVersion int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&serverVersion); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", name, err)
	}
	lcfg := cfg.Copy()
	lcfg.MaxConns, lcfg.MinConns, lcfg.MinIdleConns = laneCount, 0, 0
	settings := maps.Clone(laneSettings)
	if serverVersion >= 140000 { // the first with idle_session_timeout; an older one refuses to connect with it
		settings["idle_session_timeout"] = laneIdleSession
		// The pool closes a lane's spare connection before PostgreSQL would, so that an idle hub
		// does not fill the server's log with sessions it ended.
		lcfg.MaxConnIdleTime, lcfg.HealthCheckPeriod = 30*time.Second, 10*time.Second
	}
	for name, value := range settings {
		if _, set := lcfg.ConnConfig.RuntimeParams[name]; !set {
			lcfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	lanePool, err := pgxpool.NewWithConfig(ctx, lcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, lanes: lanePool, name: name, writes: newLane(writerLock), books: newLane(bookkeepingLock)}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("postgres: migrate %s: %w", s.name, err)
	}
	return s, nil
}

func describe(c *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", Host: fmt.Sprintf("%s:%d", c.Host, c.Port), Path: "/" + c.Database}
	if c.User != "" {
		u.User = url.User(c.User)
	}
	return u.String()
}

// Path names the database, without a password, for messages and logs. There is no file: it is
// here so that callers that say where the hub's data is can say it of either store.
func (s *Store) Path() string { return s.name }

// Close implements hub.Store.
func (s *Store) Close() error {
	s.pool.Close()
	s.lanes.Close()
	return nil
}

// Backup is what hub/sqlite does with VACUUM INTO; a PostgreSQL database is backed up with
// PostgreSQL's own tools.
func (s *Store) Backup(ctx context.Context, path string) error {
	return loyalty.Errorf(loyalty.EINVALID, "the hub's database is on PostgreSQL (%s): back it up with pg_dump (pg_dump -Fc -f %s …), "+
		"restore it with pg_restore, then mark it restored before the hub starts", s.name, path)
}

// migrationLock is the advisory lock key that keeps two hubs starting at once from migrating
// the same database together.
const migrationLock = 0x6c6f79616c7479 // "loyalty"

// migrate applies every migrations/*.sql file not yet recorded in schema_migrations, in name
// order, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, path := range names {
		name := strings.TrimPrefix(path, "migrations/")
		err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
			if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
				return err
			}
			if _, err := t.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				name       text PRIMARY KEY,
				applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			var done bool
			if err := t.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)`, name).Scan(&done); err != nil || done {
				return err
			}
			b, err := migrations.ReadFile(path)
			if err != nil {
				return err
			}
			// Without arguments, Exec sends the file as one simple query: every statement in it.
			if _, err := t.Exec(ctx, string(b)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err = t.Exec(ctx, `INSERT INTO schema_migrations (name) VALUES ($1)`, name)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Update implements hub.Store: fn runs in a SERIALIZABLE transaction, again from the start when
// a concurrent transaction makes PostgreSQL refuse it (see the package documentation: fn must
// have no effect outside the transaction).
func (s *Store) Update(ctx context.Context, fn func(hub.Tx) error) error {
	l := &s.writes
	if hub.IsBookkeeping(ctx) {
		l = &s.books // beside the writer, one at a time among themselves
	}
	db, err := s.take(ctx, l)
	if err != nil {
		return err
	}
	defer s.give(db, l)
	var t *tx
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if attempt > 1 {
			if err := pause(ctx, attempt); err != nil {
				return err
			}
		}
		t = &tx{}
		err = pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(ptx pgx.Tx) error {
			t.tx = ptx
			return fn(t)
		})
		// fn may have turned the refusal into an error of its own, or ignored it (then the
		// commit fails): the first error PostgreSQL gave in the transaction decides.
		if err == nil || !(retryable(err) || retryable(t.failed)) {
			return err
		}
	}
	return fmt.Errorf("postgres: a write transaction was refused %d times in a row because of concurrent transactions "+
		"(serialization failure or deadlock); giving up: %w", maxAttempts, errors.Join(err, t.failed))
}

// A lane is a kind of write transaction that runs one at a time across the hub processes on the
// database: an advisory lock (key) held by the transaction's connection from before it begins
// until after it ends, and a token (sem) that the process's writers of the lane wait for first,
// in memory, so that one connection per process and lane waits on the database and the others
// stay free for reads.
type lane struct {
	key int64
	sem chan struct{}
}

func newLane(key int64) lane { return lane{key: key, sem: make(chan struct{}, 1)} }

// laneCount is how many write lanes there are: the size of Store.lanes, a connection each.
const laneCount = 2

// The lanes' advisory locks (the package documentation, "One writer at a time").
const (
	writerLock      = 0x6c6f79616c7478 // "loyaltx": every write transaction but bookkeeping
	bookkeepingLock = 0x6c6f79616c7462 // "loyaltb": the sync sessions' bookkeeping (hub.Bookkeeping)
)

// laneSettings bound how long a hub process that stops answering can hold a lane's lock, and
// with it every hub's writes (or sessions' renewals): PostgreSQL ends the lane's session, which
// gives the lock back, when its transaction waits on the hub for 30 s (a process frozen or
// stopped mid-transaction), or when the hub's machine is gone from the network for about a minute
// (keepalives unanswered, or data sent and not acknowledged; a Unix socket ignores these). Its
// transaction rolls back and nothing it wrote counts: a push's store sends it again, to any hub.
// Without them, PostgreSQL waits for the operating system's keepalives (over two hours), or for
// ever for a frozen process whose machine still answers. A hub's own transactions never wait
// that long between statements: they do nothing outside the database (the package
// documentation). A setting in the connection URL (…?idle_in_transaction_session_timeout=2min)
// takes precedence.
var laneSettings = map[string]string{
	"idle_in_transaction_session_timeout": "30s",
	"tcp_keepalives_idle":                 "30",
	"tcp_keepalives_interval":             "10",
	"tcp_keepalives_count":                "3",
	"tcp_user_timeout":                    "60000",
}

// laneIdleSession is the lanes' idle_session_timeout, on PostgreSQL 14 and later: it covers the
// moments outside a transaction when a lane's session holds its lock, between taking it and BEGIN
// and between COMMIT and giving it back. Microseconds, but a process frozen in one of them held
// every hub's writes for as long as it stayed frozen. A lane's connection is otherwise never idle
// that long with the lock: waiting for the lock is not idle, and inside a transaction
// idle_in_transaction_session_timeout applies.
const laneIdleSession = "1min"

// take takes a connection from the pool and, on it, l's lock, waiting for the transaction that
// holds it to end. The lock is the session's, taken before the transaction begins, so that the
// transaction's snapshot is taken once the previous one of the lane has committed.
func (s *Store) take(ctx context.Context, l *lane) (*pgxpool.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	conn, err := s.lanes.Acquire(ctx)
	if err != nil {
		<-l.sem
		return nil, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, l.key); err != nil {
		// Cancelled while waiting, the lock may still have been granted: the connection goes,
		// and the lock with its session.
		conn.Conn().Close(context.Background())
		conn.Release()
		<-l.sem
		return nil, err
	}
	return conn, nil
}

// give gives l's lock back and the connection to the pool; a connection that cannot give the
// lock back is closed, which does.
func (s *Store) give(conn *pgxpool.Conn, l *lane) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		conn.Conn().Close(ctx)
	}
	conn.Release()
	<-l.sem
}

// View implements hub.Store: fn runs in a READ ONLY, REPEATABLE READ transaction.
func (s *Store) View(ctx context.Context, fn func(hub.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(ptx pgx.Tx) error {
		return fn(&tx{tx: ptx})
	})
}

// retryable reports whether err is PostgreSQL refusing a transaction because of a concurrent
// one: running it again may succeed.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// pause waits before attempt (2, 3, …): a random time up to 2ms, 4ms, … at most 100ms, so that
// the transactions that collided do not collide again in step.
func pause(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<(attempt-1), 100*time.Millisecond)
	timer := time.NewTimer(rand.N(limit) + 1)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// tx implements hub.Tx on a pgx transaction. Its exec, query and queryRow note the first error
// PostgreSQL returns: after it the transaction is aborted, and Update decides from it whether to
// run the transaction again.
type tx struct {
	tx     pgx.Tx
	failed error
}

func (t *tx) note(err error) {
	var pe *pgconn.PgError
	if t.failed == nil && errors.As(err, &pe) {
		t.failed = err
	}
}

// errText is returned, without asking PostgreSQL, for text it cannot store: a NUL character
// (U+0000), which SQLite stores and a PostgreSQL text refuses, or invalid UTF-8. Sending it
// would fail the statement and so abort the whole transaction.
var errText = loyalty.Errorf(loyalty.EINVALID, "text with a NUL character (U+0000) or invalid UTF-8 cannot be stored")

func storable(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }

func checkArgs(args []any) error {
	for _, a := range args {
		switch v := a.(type) {
		case string:
			if !storable(v) {
				return errText
			}
		case []string:
			for _, s := range v {
				if !storable(s) {
					return errText
				}
			}
		}
	}
	return nil
}

// sanitize makes s storable, for text kept only to be read by people (a rejection's message and
// key; the delta itself is kept whole, as escaped JSON).
func sanitize(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error) {
	if err := checkArgs(args); err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := t.tx.Exec(ctx, q, args...)
	t.note(err)
	return tag, err
}

// each runs q and calls fn for each row.
// plannedPerCall, as a statement's first argument, has PostgreSQL plan it for its arguments at
// every call (pgx's exec mode: an unnamed statement), never run a plan cached for all arguments.
// For the ingest's statements whose best plan depends on the size of the ledger: after five
// calls of a prepared statement, PostgreSQL may keep a generic plan, and one made while the ledger
// held a few hundred rows scans it whole at every call after, until the next ANALYZE. On a new
// database, ingest ran at 1/100 of the bare upsert that way. Planning costs a fraction of a
// millisecond (the qualifying read's about 0.75 ms), once per batch. Only for each and the like:
// a pipeline (tx.pipeline) would send it to the server as a parameter.
var plannedPerCall = pgx.QueryExecModeExec

func (t *tx) each(ctx context.Context, q string, args []any, fn func(pgx.Rows) error) error {
	if err := checkArgs(args); err != nil {
		return err
	}
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		t.note(err)
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	err = rows.Err()
	t.note(err)
	return err
}

// read is one statement of a pipeline (tx.pipeline) and what to do with each row it returns.
type read struct {
	q    string
	args []any
	row  func(pgx.Rows) error
}

// pipeline sends reads that do not depend on each other in one round trip, and hands each its
// rows, in order. The first error ends it: a statement's (noted, so that a serialization failure
// is retried), or a handler's, after which the statements left are not looked at.
func (t *tx) pipeline(ctx context.Context, reads ...read) error {
	b := &pgx.Batch{}
	for _, r := range reads {
		if err := checkArgs(r.args); err != nil {
			return err
		}
		b.Queue(r.q, r.args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				if err := r.row(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	}
	err := t.tx.SendBatch(ctx, b).Close()
	t.note(err)
	return err
}

// row is a pgx.Row that notes its error in its transaction.
type row struct {
	t   *tx
	r   pgx.Row
	err error
}

func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	err := r.r.Scan(dest...)
	r.t.note(err)
	return err
}

func (t *tx) queryRow(ctx context.Context, q string, args ...any) row {
	if err := checkArgs(args); err != nil {
		return row{err: err}
	}
	return row{t: t, r: t.tx.QueryRow(ctx, q, args...)}
}

// ms and fromMS convert times to the schema's unix milliseconds, 0 for the zero time.

// notFound turns "no row" into ENOTFOUND with the message given. Text PostgreSQL cannot store
// cannot be a key it has either.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, pgx.ErrNoRows) || err == errText {
		return loyalty.Errorf(loyalty.ENOTFOUND, format, args...)
	}
	return err
}

// limit is a LIMIT argument: as in SQLite, a negative limit is no limit (NULL, for PostgreSQL).
func limit(n int) any {
	if n < 0 {
		return nil
	}
	return n
}
