package hub_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for rawDB
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver, for rawDB

	"github.com/loyalty-edge-sync/loyalty/hub"
	hubpostgres "github.com/loyalty-edge-sync/loyalty/hub/postgres"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/pgtest"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// The hub's tests run on either storage backend. By default each test's hub database is a
// SQLite file in its temporary folder. With LOYALTY_TEST_POSTGRES set to the URL of a PostgreSQL
// server the tests may create databases on, each test gets a database of its own there, created
// empty and dropped when the test ends:
//
//	LOYALTY_TEST_POSTGRES='postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable' go test ./hub/...

const postgresEnv = pgtest.Env

func postgresURL() string { return os.Getenv(postgresEnv) }

// onPostgres reports whether the tests run on PostgreSQL.
func onPostgres() bool { return postgresURL() != "" }

// skipOnPostgres skips a test that is about SQLite itself, saying why.
func skipOnPostgres(tb testing.TB, why string) {
	tb.Helper()
	if onPostgres() {
		tb.Skipf("SQLite only (%s); this run is on PostgreSQL (%s)", why, postgresEnv)
	}
}

// newDatabase returns where a new, empty hub database is: a file path on SQLite, or the URL of
// a database created for tb on the PostgreSQL server and dropped when tb ends.
func newDatabase(tb testing.TB) string {
	tb.Helper()
	if !onPostgres() {
		return filepath.Join(tb.TempDir(), "hub.db")
	}
	return pgtest.Database(tb, "loyalty_hub_test_", "")
}

// locations remembers where each store the tests opened keeps its database (whereOf).
var locations sync.Map // hub.Store → string

// openStore opens the hub database at where (creating and migrating it if it is new); the store
// is closed when tb ends.
func openStore(tb testing.TB, where string) hub.Store {
	tb.Helper()
	ctx := context.Background()
	var s hub.Store
	var err error
	if onPostgres() {
		s, err = hubpostgres.Open(ctx, where)
	} else {
		s, err = hubsqlite.Open(ctx, where)
	}
	if err != nil {
		tb.Fatalf("open the hub store: %v", err)
	}
	locations.Store(s, where)
	tb.Cleanup(func() {
		s.Close()
		locations.Delete(s)
	})
	return s
}

// newStore opens a new, empty hub database for tb.
func newStore(tb testing.TB) hub.Store {
	tb.Helper()
	return openStore(tb, newDatabase(tb))
}

// whereOf returns where a store opened by openStore keeps its database.
func whereOf(tb testing.TB, s hub.Store) string {
	tb.Helper()
	where, ok := locations.Load(s)
	if !ok {
		tb.Fatalf("the store %T was not opened by openStore", s)
	}
	return where.(string)
}

// rawDB is a hub database opened directly, outside the hub, to write what only an older version
// of the hub would have, or to read what is stored. Its queries use ? placeholders on either
// backend.
type rawDB struct {
	*sql.DB
	postgres bool
}

// openRaw opens the hub database at where directly; it is closed when tb ends.
func openRaw(tb testing.TB, where string) rawDB {
	tb.Helper()
	driver := "sqlite"
	if onPostgres() {
		driver = "pgx"
	}
	db, err := sql.Open(driver, where)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return rawDB{DB: db, postgres: onPostgres()}
}

// bind writes q's ? placeholders as PostgreSQL's $1, $2, … when the database is PostgreSQL.
func (db rawDB) bind(q string) string {
	if !db.postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (db rawDB) Exec(q string, args ...any) (sql.Result, error) {
	return db.DB.Exec(db.bind(q), args...)
}

func (db rawDB) QueryRow(q string, args ...any) *sql.Row { return db.DB.QueryRow(db.bind(q), args...) }

// storedBytes returns what a backup of the hub database at where holds: on SQLite, the bytes of
// its files; on PostgreSQL, every row of every table as text (as a plain pg_dump writes them:
// bytea in hex).
func storedBytes(tb testing.TB, where string) []byte {
	tb.Helper()
	if !onPostgres() {
		var raw []byte
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(where + suffix)
			if err != nil && !os.IsNotExist(err) {
				tb.Fatal(err)
			}
			raw = append(raw, b...)
		}
		return raw
	}
	db := openRaw(tb, where)
	defer db.Close()
	rows, err := db.Query(`SELECT quote_ident(table_name) FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if err != nil {
		tb.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			tb.Fatal(err)
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	var raw []byte
	for _, t := range tables {
		var text string
		if err := db.QueryRow(`SELECT COALESCE(string_agg(t::text, E'\n'), '') FROM ` + t + ` t`).Scan(&text); err != nil {
			tb.Fatal(err)
		}
		raw = append(raw, text...)
	}
	return raw
}

// templateOf freezes the database of h's store as a template and returns a function that opens a
// fresh copy of it for a test, as it was. h's store is closed on PostgreSQL (a template database
// takes no connections while it is copied); on SQLite it goes on.
func templateOf(tb testing.TB, h *hub.Hub) func(t *testing.T) hub.Store {
	tb.Helper()
	where := whereOf(tb, h.Store)
	if onPostgres() {
		h.Store.Close()
		frozen := pgtest.Name(tb, where)
		return func(t *testing.T) hub.Store {
			return openStore(t, pgtest.Database(t, "loyalty_hub_test_", frozen))
		}
	}
	template := filepath.Join(tb.TempDir(), "template.db")
	if err := h.Store.(*hubsqlite.Store).Backup(context.Background(), template); err != nil {
		tb.Fatal(err)
	}
	return func(t *testing.T) hub.Store {
		b, err := os.ReadFile(template)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "hub.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := hubsqlite.OpenWith(context.Background(), path, sqlitedb.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}
