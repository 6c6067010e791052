// Package sqlitedb opens SQLite databases (modernc.org/sqlite) the way both the agent's and the
// hub's stores need them, and runs their embedded migrations.
//
// A DB is two pools over one file: a writer pool of one connection whose transactions begin
// IMMEDIATE (SQLite has one writer at a time; taking the write lock up front avoids upgrade
// deadlocks and SQLITE_BUSY mid-transaction), and a reader pool for concurrent reads in WAL
// mode. Every connection gets its pragmas from the DSN, so none is missed.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a SQLite database with a single-connection writer and a pool of readers.
type DB struct {
	W    *sql.DB // writes: one connection, BEGIN IMMEDIATE
	R    *sql.DB // reads: several connections, read-only
	Path string
}

// DSN returns the data source name for path with the project's pragmas: WAL, synchronous FULL
// (a committed transaction survives a power cut), foreign keys, and a busy timeout.
func DSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path and applies migrations from fsys: every
// *.sql file, in name order, each once, each in its own transaction, recorded in the
// schema_migrations table.
func Open(ctx context.Context, path string, migrations fs.FS) (*DB, error) {
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("sqlite: a file path is required (in-memory databases are not shared across connections)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite path: %w", err)
	}
	w, err := sql.Open("sqlite", DSN(abs, false))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	db := &DB{W: w, Path: abs}
	if err := db.migrate(ctx, migrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate %s: %w", abs, err)
	}
	r, err := sql.Open("sqlite", DSN(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	r.SetMaxOpenConns(4)
	db.R = r
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	var err error
	if db.R != nil {
		err = db.R.Close()
	}
	if e := db.W.Close(); e != nil {
		err = e
	}
	return err
}

// Update runs fn in a write transaction and commits it if fn returns nil.
func (db *DB) Update(ctx context.Context, fn func(*sql.Tx) error) error {
	return inTx(ctx, db.W, nil, fn)
}

// View runs fn in a read transaction, which sees one consistent snapshot.
func (db *DB) View(ctx context.Context, fn func(*sql.Tx) error) error {
	return inTx(ctx, db.R, &sql.TxOptions{ReadOnly: true}, fn)
}

func inTx(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
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
		err := db.Update(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil || n > 0 {
				return err
			}
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return err
			}
			for _, stmt := range strings.Split(string(b), ";\n") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
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
