// Package migratetest runs the data statements of schema migrations again, on a database that
// was opened (so migrated) before a test wrote rows as an earlier version would have: what a
// migration does to those rows can then be checked.
package migratetest

import (
	"database/sql"
	"os"
	"strings"
	"testing"
)

// Rerun executes each migration file's statements on db, in order, leaving out its ALTER TABLE
// statements: the columns they add are there already.
func Rerun(tb testing.TB, db *sql.DB, files ...string) {
	tb.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var keep []string
		for _, stmt := range strings.SplitAfter(string(b), ";") {
			if !strings.Contains(stmt, "ALTER TABLE") {
				keep = append(keep, stmt)
			}
		}
		if _, err := db.Exec(strings.Join(keep, "")); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
	}
}
