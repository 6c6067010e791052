package hub_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestImportAnalyzesPostgres: an import of AnalyzeAfterImport members brings PostgreSQL's
// statistics of the tables up to date, so that the sales that follow are not planned for the
// nearly empty tables of before it; a smaller one leaves them to the server.
func TestImportAnalyzesPostgres(t *testing.T) {
	if !onPostgres() {
		t.Skipf("needs a PostgreSQL server: run with %s=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable go test ./hub/ -run Postgres", postgresEnv)
	}
	h := openHub(t)
	db := openRaw(t, whereOf(t, h.Store))
	analyzed := func() bool {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'members' AND last_analyze IS NOT NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	file := func(from, n int) string {
		var b strings.Builder
		b.WriteString("email,points\n")
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, "bulk%d@example.com,10\n", i)
		}
		return b.String()
	}
	if _, err := h.Import(cliCtx(), strings.NewReader(file(0, 100)), hub.ImportOptions{ImportID: "small", Reason: "migration"}); err != nil {
		t.Fatal(err)
	}
	if analyzed() {
		t.Fatal("an import of 100 members analyzed the tables")
	}
	rep, err := h.Import(cliCtx(), strings.NewReader(file(100, hub.AnalyzeAfterImport)), hub.ImportOptions{ImportID: "large", Reason: "migration"})
	if err != nil || rep.Created != hub.AnalyzeAfterImport {
		t.Fatalf("the large import: %+v, %v", rep, err)
	}
	if !analyzed() {
		t.Fatalf("an import of %d members left the tables unanalyzed", hub.AnalyzeAfterImport)
	}
}
