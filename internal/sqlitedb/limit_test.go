package sqlitedb_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"modernc.org/sqlite"
)

// compiles runs query on one connection with each limit, through one prepared statement, and
// returns how many times SQLite compiled it: the authorizer is asked on every compilation,
// including a recompilation inside sqlite3_step.
func compiles(t *testing.T, query string, limits []int) int {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "limit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3), (4), (5)`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := 0
	err = conn.Raw(func(dc any) error {
		return dc.(sqlite.AuthorizerRegisterer).RegisterAuthorizer(func(action sqlite.AuthorizerActionCode, _, _, _, _ string) sqlite.AuthorizerReturnCode {
			if action == sqlite.AuthSelect {
				n++
			}
			return sqlite.AuthorizerOK
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := conn.PrepareContext(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, limit := range limits {
		rows, err := st.QueryContext(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for rows.Next() {
			got++
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if got != min(limit, 5) {
			t.Fatalf("%s with %d: %d rows", query, limit, got)
		}
	}
	return n
}

// TestLimitPlusZeroIsCompiledOnce: SQLite reads a LIMIT that is a bare parameter while it plans
// the statement, so binding another value recompiles a prepared statement at its next step (a
// cost as large as the query's own in the hub's ingest). LIMIT ?+0 is an expression, evaluated
// when the statement runs: prepared once, it stays compiled whatever limit it is given.
func TestLimitPlusZeroIsCompiledOnce(t *testing.T) {
	limits := []int{1, 2, 3, 4, 5, 6, 7, 8}
	bare := compiles(t, `SELECT x FROM t ORDER BY x LIMIT ?`, limits)
	plus := compiles(t, `SELECT x FROM t ORDER BY x LIMIT ?+0`, limits)
	t.Logf("compilations for %d limits: LIMIT ? %d, LIMIT ?+0 %d", len(limits), bare, plus)
	if plus != 1 {
		t.Errorf("LIMIT ?+0 compiled %d times for %d limits, want once", plus, len(limits))
	}
	if bare <= plus { // else the count would not see a recompilation, and the check above proves nothing
		t.Errorf("LIMIT ? compiled %d times for %d limits: this SQLite no longer recompiles for a new limit, or the authorizer no longer counts it", bare, len(limits))
	}
}

var bareLimit = regexp.MustCompile(`(?i)\bLIMIT\s+(\?\d*|\$\d+|:\w+|@\w+)(\s*[^\s+\d]|\s*$)`)

// TestStoresLimitPlusZero keeps the SQLite stores to LIMIT ?+0 (see
// TestLimitPlusZeroIsCompiledOnce): a query whose limit is a bare parameter is recompiled
// whenever it is called with another limit.
func TestStoresLimitPlusZero(t *testing.T) {
	for _, dir := range []string{"../../hub/sqlite", "../../agent/sqlite", "."} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(b), "\n") {
				if bareLimit.MatchString(line) {
					t.Errorf("%s:%d: a LIMIT that is a bare parameter is recompiled for each new value: write LIMIT ?+0\n\t%s", f, i+1, strings.TrimSpace(line))
				}
			}
		}
	}
}
