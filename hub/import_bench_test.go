package hub_test

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

var importRows = flag.Int("import.rows", 20000, "rows BenchmarkImport imports (docs/PERFORMANCE.md has 1000000)")

// importFile returns a CSV file of n rows in the email,points format, each a new member.
func importFile(n int) string {
	var b strings.Builder
	b.Grow(40 * n)
	b.WriteString("email,points,name\n")
	for i := range n {
		fmt.Fprintf(&b, "member%07d@example.com,%d,Member %d\n", i, 1+i%5000, i)
	}
	return b.String()
}

// BenchmarkImport imports -import.rows rows of new members with points (Hub.Import, in batches
// of DefaultImportBatch), on a hub with the example program (tiers, expiry), against a bare
// batched insert of the same rows into the same backend: the members and their adjust deltas
// written in batches of the same size with no checks, no lookups and no member state
// (InsertMembers, InsertDeltas, one version range per batch). Each reports rows/s; the import's
// share of the bare insert's rate is what docs/PERFORMANCE.md records.
//
//	go test ./hub -run '^$' -bench BenchmarkImport -benchtime 1x -import.rows 1000000
func BenchmarkImport(b *testing.B) {
	n := *importRows
	file := importFile(n)
	fresh := func(b *testing.B) *hub.Hub {
		b.Helper()
		h := openHub(b)
		if _, err := h.SetProgram(context.Background(), readExampleProgram(b)); err != nil {
			b.Fatal(err)
		}
		return h
	}
	b.Run("bare", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			h := fresh(b)
			b.StartTimer()
			start := time.Now()
			bareInsert(b, h, n, hub.DefaultImportBatch)
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
		}
	})
	b.Run("import", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			h := fresh(b)
			b.StartTimer()
			start := time.Now()
			rep, err := h.Import(cliCtx(), strings.NewReader(file), hub.ImportOptions{ImportID: "bench", Reason: "benchmark"})
			if err != nil || rep.Imported != n {
				b.Fatalf("import: %+v, %v", rep.Imported, err)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
		}
	})
}

// bareInsert writes n members with their points and an adjust delta each, batch rows per
// transaction, with nothing else: the floor an import's cost is measured against.
func bareInsert(tb testing.TB, h *hub.Hub, n, batch int) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		ms := make([]loyalty.Member, 0, hi-lo)
		ds := make([]hub.NewDelta, 0, hi-lo)
		for i := lo; i < hi; i++ {
			m := loyalty.Member{ID: fmt.Sprintf("b%07d", i), Email: fmt.Sprintf("member%07d@example.com", i), Name: fmt.Sprintf("Member %d", i),
				Balance: int64(1 + i%5000), CreatedAt: now}
			d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: m.ID, Kind: loyalty.KindAdjust, Points: m.Balance,
				OrderID: "bench", Rule: hub.RuleImport, Reason: "benchmark", OccurredAt: now}
			ms = append(ms, m)
			ds = append(ds, hub.NewDelta{Delta: d, Hash: d.Hash(), ReceivedAt: now})
		}
		err := h.Store.Update(ctx, func(tx hub.Tx) error {
			v, err := tx.NextVersions(ctx, len(ms))
			if err != nil {
				return err
			}
			for i := range ms {
				ms[i].Version = v + int64(i)
			}
			if err := tx.InsertMembers(ctx, ms); err != nil {
				return err
			}
			_, err = tx.InsertDeltas(ctx, ds)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}
