package hub_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// BenchmarkPush measures the hub's ingest of 500-delta batches (dedup, validation against the
// rule version, balance updates, one transaction). Compare with BenchmarkBareBatchedInsert,
// measured in the same run.
func BenchmarkPush(b *testing.B) {
	h := openHub(b)
	ctx := context.Background()
	const members, batch = 1000, 500
	for i := range members {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("b%04d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	ds := make([]loyalty.Delta, batch)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range ds {
			ds[i] = earn("s1", fmt.Sprintf("b%04d", (n*batch+i)%members), 1299)
		}
		if _, err := h.Push(ctx, "s1", ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "deltas/s")
}

// BenchmarkBareBatchedInsert is the baseline: 500 rows per transaction with
// INSERT ... ON CONFLICT DO NOTHING into a SQLite file with the same pragmas.
func BenchmarkBareBatchedInsert(b *testing.B) {
	skipOnPostgres(b, "the baseline is a bare SQLite file, to compare BenchmarkPush on SQLite with")
	ctx := context.Background()
	dir := b.TempDir()
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, "bare.db"), emptyFS{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.Exec(`CREATE TABLE t (id TEXT PRIMARY KEY, member TEXT, points INTEGER)`); err != nil {
		b.Fatal(err)
	}
	const batch = 500
	b.ResetTimer()
	cpu0 := cpuTime()
	for n := 0; n < b.N; n++ {
		err := db.Update(ctx, func(tx *sqlitedb.Tx) error {
			for i := range batch {
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, member, points) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
					loyalty.NewDeltaID(), fmt.Sprint(i), 12); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/row")
}

type emptyFS struct{}

func (emptyFS) Open(name string) (fs.File, error) { return nil, fs.ErrNotExist }
