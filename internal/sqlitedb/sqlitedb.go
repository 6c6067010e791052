// Package sqlitedb opens SQLite databases (modernc.org/sqlite) the way both the agent's and the
// hub's stores need them, and runs their embedded migrations.
//
// A DB is two pools over one file: a writer pool of one connection whose transactions begin
// IMMEDIATE (SQLite has one writer at a time; taking the write lock up front avoids upgrade
// deadlocks and SQLITE_BUSY mid-transaction), and a reader pool for concurrent reads in WAL
// mode. Every connection gets its pragmas from the DSN, so none is missed. With
// Options.GroupCommit, concurrent Update calls share one transaction and one commit (group.go).
package sqlitedb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a SQLite database with a single-connection writer and a pool of readers.
type DB struct {
	W    *sql.DB // writes: one connection, BEGIN IMMEDIATE
	R    *sql.DB // reads: several connections, read-only
	Path string

	wStmts, rStmts *stmtCache
	group          *groupCommit // nil: every Update is its own transaction
	noSync         bool         // Options.NoSync
}

// Tx is a transaction whose queries use prepared statements, cached per query text: preparing
// is otherwise the largest cost of a small SQLite statement. Write a limit as LIMIT ?+0: a
// bare parameter there makes SQLite compile the statement again whenever its value changes
// (TestLimitPlusZeroIsCompiledOnce). Under group commit, query through
// Tx's own methods, not the embedded *sql.Tx's: a caller's cancellation can interrupt those
// (stmtCtx), and their Commit or Rollback would end the other callers' transaction.
type Tx struct {
	*sql.Tx
	cache  *stmtCache
	shared bool     // one caller's part of a group commit: see stmtCtx
	after  []func() // AfterCommit
}

// AfterCommit registers f to run once the transaction has committed, before Update (or View)
// returns. It is the place for effects outside the database, such as an in-memory cache or a log
// line, that must not happen if the transaction is rolled back: under group commit a caller's
// part is rolled back alone when its function fails, and the shared commit can fail after the
// function returned nil. f runs on the committing goroutine (under group commit, before the next
// transaction begins); it must not block, use the transaction or call Update.
func (t *Tx) AfterCommit(f func()) { t.after = append(t.after, f) }

// stmtCtx is the context a statement runs under. In a shared transaction a statement must not
// be interrupted by its caller's cancellation: SQLite would roll back the whole transaction, the
// other callers' work with it. So it runs without cancellation; a context already cancelled still
// fails the statement, in database/sql, before it reaches SQLite.
func (t *Tx) stmtCtx(ctx context.Context) context.Context {
	if !t.shared || ctx.Err() != nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// SecureDelete turns secure_delete on until the returned function puts it back. Without it,
// SQLite leaves the bytes of a rewritten or deleted row or index entry in the page's free space,
// where a copy of the file would still show them: for personal data being erased. The setting
// belongs to the connection, so it is put back after the statements that need it.
func (t *Tx) SecureDelete(ctx context.Context) (restore func(), err error) {
	var mode int
	if err := t.QueryRowContext(ctx, `PRAGMA secure_delete`).Scan(&mode); err != nil {
		return nil, err
	}
	if _, err := t.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
		return nil, err
	}
	return func() { t.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA secure_delete = %d`, mode)) }, nil
}

// EraseWait is how long a checkpoint after an erasure waits for readers that still use the WAL.
const EraseWait = time.Second

// Checkpoint copies every page the WAL holds into the database file and empties the WAL
// (wal_checkpoint TRUNCATE), waiting for the readers that still use it until ctx ends; it says so
// if one kept it busy. After an erasure, the WAL's older frames still hold the erased data.
func (db *DB) Checkpoint(ctx context.Context) error {
	var busy, log, done int
	if err := db.W.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
		return err
	}
	if busy != 0 {
		return fmt.Errorf("checkpoint: a reader or writer kept the WAL busy (%d of %d pages copied)", done, log)
	}
	return nil
}

// ExecContext runs q with a cached prepared statement.
func (t *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = t.stmtCtx(ctx)
	if st := t.cache.get(q); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, q, args...)
}

// QueryContext runs q with a cached prepared statement.
func (t *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = t.stmtCtx(ctx)
	if st := t.cache.get(q); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, q, args...)
}

// Strings runs q, a query of one text column, and returns its values in order.
func (t *Tx) Strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// QueryRowContext runs q with a cached prepared statement.
func (t *Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = t.stmtCtx(ctx)
	if st := t.cache.get(q); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, q, args...)
}

// stmtCache holds prepared statements of one pool. A query seen for the first time inside a
// transaction runs unprepared and is prepared after the transaction ends: the writer pool has a
// single connection, which the transaction holds, so preparing inside it would deadlock.
type stmtCache struct {
	db   *sql.DB
	mu   sync.RWMutex
	m    map[string]*sql.Stmt
	want map[string]bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, want: map[string]bool{}}
}

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.RLock()
	st := c.m[q]
	c.mu.RUnlock()
	if st == nil {
		c.mu.Lock()
		c.want[q] = true
		c.mu.Unlock()
	}
	return st
}

// prepareWanted prepares the queries seen since the last call. Call it outside any transaction.
// No lock is held while preparing, which waits for a connection: a transaction holding the
// writer connection may be asking the cache for a statement at that moment.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	c.mu.Lock()
	var queries []string
	for q := range c.want {
		queries = append(queries, q)
		delete(c.want, q)
	}
	c.mu.Unlock()
	for _, q := range queries {
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue // it runs unprepared, as before
		}
		c.mu.Lock()
		if _, ok := c.m[q]; ok {
			st.Close()
		} else {
			c.m[q] = st
		}
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// Options tunes how a database is opened.
type Options struct {
	// NoSync turns fsync off (synchronous OFF): a crash of the process loses nothing, a power
	// cut may. For the simulator and benchmarks of logic only; never for real data.
	NoSync bool
	// GroupCommit lets concurrent Update calls share one transaction and one commit, each
	// caller's function in its own savepoint (group.go). For stores whose Update functions keep
	// every effect outside the database in Tx.AfterCommit.
	GroupCommit bool
	// MemoryTemp keeps temporary files in memory (temp_store MEMORY): above all the statement
	// journal, which SQLite writes for a statement that may fail part way through in a longer
	// transaction (one with triggers or constraints that can abort it): the first change of each
	// page by such a statement is otherwise written to a temporary file, a system call each. It
	// holds what one statement changes, and temporary sort tables, in memory.
	MemoryTemp bool
	// CacheKiB sizes the writer connection's page cache (0: SQLite's default, 2 MiB). Readers keep
	// the default.
	CacheKiB int
	// CheckpointPages is how many pages the WAL may hold before the commit that passes it copies
	// them into the database (wal_autocheckpoint; 0: SQLite's default, 1,000 pages, 4 MiB). A
	// page written again before the checkpoint is copied once: a database whose writes come back
	// to the same pages (members, the scope's per-store rows, index pages) copies fewer with a
	// larger WAL, and the commit that checkpoints waits longer, more rarely.
	CheckpointPages int
	// SecureDelete has the writer overwrite with zeros what it deletes or moves, and the pages it
	// frees (secure_delete ON), always: not only in Tx.SecureDelete's statements. An index that
	// merges its segments in the background (the hub's FTS5 index of names) frees pages holding
	// copies of what it indexes long before an erasure deletes it.
	SecureDelete bool
}

// DSN returns the data source name for path with the project's pragmas: WAL, synchronous FULL
// (a committed transaction survives a power cut), foreign keys, and a busy timeout.
func DSN(path string, readOnly bool, opts Options) string {
	sync := "FULL"
	if opts.NoSync {
		sync = "OFF"
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	if opts.MemoryTemp {
		q.Add("_pragma", "temp_store(MEMORY)")
	}
	if opts.CheckpointPages > 0 && !readOnly {
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", opts.CheckpointPages))
	}
	if opts.CacheKiB > 0 && !readOnly {
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", opts.CacheKiB))
	}
	if opts.SecureDelete && !readOnly {
		q.Add("_pragma", "secure_delete(1)")
	}
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	// The path is escaped: in a file: URI, '#' would end it, '?' would start the parameters and
	// '%' would start an escape, so a database path holding one would name another file.
	return (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String()
}

// Open opens (creating if needed) the database at path and applies migrations from fsys: every
// *.sql file, in name order, each once, each in its own transaction, recorded in the
// schema_migrations table.
func Open(ctx context.Context, path string, migrations fs.FS) (*DB, error) {
	return OpenWith(ctx, path, migrations, Options{})
}

// readers is how many read connections a DB keeps open: transactions that read only (View) run
// beside each other and beside the writer (WAL).
const readers = 4

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, migrations fs.FS, opts Options) (*DB, error) {
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("sqlite: a file path is required (in-memory databases are not shared across connections)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite path: %w", err)
	}
	if err := CheckFolder(abs); err != nil {
		return nil, err
	}
	// A new database is its owner's alone (SQLite gives its WAL the same mode): it holds members'
	// personal data. An empty file is an empty database to SQLite.
	if f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	}
	w, err := sql.Open("sqlite", DSN(abs, false, opts))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	db := &DB{W: w, Path: abs, noSync: opts.NoSync}
	if err := db.migrate(ctx, migrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate %s: %w", abs, err)
	}
	r, err := sql.Open("sqlite", DSN(abs, true, opts))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	// Every reader stays open. database/sql keeps two idle connections by default and closes the
	// others after use: a third and fourth reader, under load, would each open the file again,
	// read the schema and prepare their statements anew for every transaction.
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	db.R = r
	db.wStmts, db.rStmts = newStmtCache(w), newStmtCache(r)
	if opts.GroupCommit {
		db.group = &groupCommit{db: db, noSync: opts.NoSync}
	}
	return db, nil
}

// Close closes both pools, once the group commit in progress, if any, has answered its callers.
func (db *DB) Close() error {
	var err error
	if db.group != nil {
		db.group.close()
	}
	if db.wStmts != nil {
		db.wStmts.close()
		db.rStmts.close()
	}
	if db.R != nil {
		err = db.R.Close()
	}
	if e := db.W.Close(); e != nil {
		err = e
	}
	return err
}

// Update runs fn in a write transaction and commits it if fn returns nil. It returns once the
// transaction has committed (durably, unless Options.NoSync) or rolled back. With
// Options.GroupCommit, fn may share its transaction with other callers' functions (group.go).
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	if db.group != nil {
		return db.group.update(ctx, fn)
	}
	if isLazy(ctx) && !db.noSync {
		return db.lazyUpdate(ctx, fn)
	}
	return inTx(ctx, db.W, nil, db.wStmts, fn)
}

// lazyUpdate runs fn in a transaction whose commit does not wait for the disk (Lazy): the
// writer connection is in synchronous NORMAL for that transaction only. The connection is held
// from the pragma to its reset, so no other transaction commits meanwhile; if the reset fails,
// the connection is discarded (a new one opens in FULL).
func (db *DB) lazyUpdate(ctx context.Context, fn func(*Tx) error) error {
	err := func() error {
		conn, err := db.W.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := setSynchronous(ctx, conn, true); err != nil {
			return err
		}
		defer func() {
			if err := setSynchronous(context.WithoutCancel(ctx), conn, false); err != nil {
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}()
		return runTx(ctx, conn.BeginTx, nil, db.wStmts, fn)
	}()
	db.wStmts.prepareWanted(context.WithoutCancel(ctx)) // once the connection is back in the pool
	return err
}

// View runs fn in a read transaction, which sees one consistent snapshot.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	return inTx(ctx, db.R, &sql.TxOptions{ReadOnly: true}, db.rStmts, fn)
}

// inTx runs fn in a transaction of pool, then prepares the queries it saw for the first time.
func inTx(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, cache *stmtCache, fn func(*Tx) error) error {
	err := runTx(ctx, pool.BeginTx, opts, cache, fn)
	cache.prepareWanted(context.WithoutCancel(ctx))
	return err
}

// runTx runs fn in a transaction that begin (a pool's BeginTx, or a held connection's) starts,
// commits it if fn returns nil, and then runs its AfterCommit functions.
func runTx(ctx context.Context, begin func(context.Context, *sql.TxOptions) (*sql.Tx, error), opts *sql.TxOptions, cache *stmtCache, fn func(*Tx) error) error {
	tx, err := begin(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	t := &Tx{Tx: tx, cache: cache}
	if err := fn(t); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, f := range t.after {
		f()
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, fsys fs.FS) error {
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))`); err != nil {
		return err
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		err := inTx(ctx, db.W, nil, newStmtCache(db.W), func(t *Tx) error {
			tx := t.Tx // migrations run raw DDL once; nothing to cache
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil || n > 0 {
				return err
			}
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return err
			}
			for _, stmt := range statements(string(b)) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES (?)`, name)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// statements splits a migration file into its statements, each ended by a semicolon at the end of
// a line. A CREATE TRIGGER statement holds statements of its own, each ending that way: it runs on
// until each BEGIN and CASE in it has met its END.
func statements(file string) []string {
	var out []string
	var trigger []string
	open := 0 // BEGIN and CASE in the trigger so far, less END
	for _, s := range strings.Split(file, ";\n") {
		if strings.TrimSpace(s) == "" && trigger == nil {
			continue
		}
		if trigger == nil && !isCreateTrigger(s) {
			out = append(out, s)
			continue
		}
		trigger = append(trigger, s)
		for _, w := range words(s) {
			switch w {
			case "BEGIN", "CASE":
				open++
			case "END":
				open--
			}
		}
		if open <= 0 {
			out = append(out, strings.Join(trigger, ";\n"))
			trigger, open = nil, 0
		}
	}
	if trigger != nil {
		out = append(out, strings.Join(trigger, ";\n"))
	}
	return out
}

// isCreateTrigger reports whether statement s creates a trigger.
func isCreateTrigger(s string) bool {
	w := words(s)
	if len(w) > 2 && w[0] == "CREATE" && (w[1] == "TEMP" || w[1] == "TEMPORARY") {
		w = w[1:]
	}
	return len(w) > 1 && w[0] == "CREATE" && w[1] == "TRIGGER"
}

// words returns the words of SQL text s in upper case, leaving out comments and quoted text.
func words(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(s)
			}
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			if j := strings.Index(s[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(s)
			}
		case c == '\'' || c == '"' || c == '`' || c == '[':
			end := c
			if c == '[' {
				end = ']'
			}
			if j := strings.IndexByte(s[i+1:], end); j >= 0 {
				i += j + 2
			} else {
				i = len(s)
			}
		case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			out = append(out, strings.ToUpper(s[i:j]))
			i = j
		default:
			i++
		}
	}
	return out
}

// CheckFolder reports, in words an operator can act on, when a database file cannot be created
// at path because its folder does not exist (SQLite itself says only "unable to open database
// file (14)").
func CheckFolder(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("database path %q: %w", path, err)
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the folder %s of the database %s does not exist: create it (mkdir -p %s), or set database (--database, LOYALTY_DATABASE) to a file in a folder that exists", dir, abs, dir)
	case err != nil:
		return fmt.Errorf("the folder of the database %s: %w", abs, err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder, so the database %s cannot be in it: set database (--database, LOYALTY_DATABASE) to a file in a folder", dir, abs)
	}
	return nil
}
