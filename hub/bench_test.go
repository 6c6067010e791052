package hub_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
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

// BenchmarkPushCodes is BenchmarkPush with every delta carrying its member's code, as an agent
// sends a change made from a scan (loyalty.Delta.Presence): held, of members the store holds
// already (the batch's scope read, no code checked); new, of members new to the store each batch
// (each code's signature checked, each member brought into the store's scope).
func BenchmarkPushCodes(b *testing.B) {
	const batch = 500
	for _, fresh := range []bool{false, true} {
		name := "held"
		if fresh {
			name = "new"
		}
		b.Run(name, func(b *testing.B) {
			h := openHub(b)
			ctx := context.Background()
			codes := map[string]string{}
			member := func(i int) string {
				id := fmt.Sprintf("b%06d", i)
				if _, ok := codes[id]; !ok {
					if _, err := h.CreateMember(ctx, loyalty.Member{ID: id}); err != nil {
						b.Fatal(err)
					}
					code, err := h.MemberToken(ctx, id)
					if err != nil {
						b.Fatal(err)
					}
					codes[id] = code
				}
				return id
			}
			ds := make([]loyalty.Delta, batch)
			for n := 0; n <= b.N; n++ { // n = 0: the members, in the store's scope for held
				b.StopTimer()
				for i := range ds {
					k := i
					if fresh {
						k = n*batch + i
					}
					ds[i] = earn("s1", member(k), 1299)
					ds[i].Presence = codes[ds[i].Member]
				}
				if n > 0 {
					b.StartTimer()
				}
				if _, err := h.Push(ctx, "s1", ds); err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					b.ResetTimer()
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "deltas/s")
		})
	}
}

// BenchmarkBareBatchedInsert is the baseline: 500 rows per transaction with
// INSERT ... ON CONFLICT DO NOTHING into a SQLite file with the same pragmas; on PostgreSQL
// (LOYALTY_TEST_POSTGRES), into a table of a database of its own, the 500 statements sent as one
// pgx batch (one round trip) in a transaction.
func BenchmarkBareBatchedInsert(b *testing.B) {
	if onPostgres() {
		bareBatchedInsertPostgres(b)
		return
	}
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

func bareBatchedInsertPostgres(b *testing.B) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, newDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id text PRIMARY KEY, member text, points bigint)`); err != nil {
		b.Fatal(err)
	}
	const batch = 500
	b.ResetTimer()
	cpu0 := cpuTime()
	for n := 0; n < b.N; n++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var q pgx.Batch
			for i := range batch {
				q.Queue(`INSERT INTO t (id, member, points) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, loyalty.NewDeltaID(), fmt.Sprint(i), 12)
			}
			return tx.SendBatch(ctx, &q).Close()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/row")
}
