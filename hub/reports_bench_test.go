package hub_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

var reportPreload = flag.Int("report.preload", 50000, "sales BenchmarkReports puts in the ledger before it measures")

// BenchmarkReports measures the reports on a ledger of -report.preload sales of one day spread
// over 1,000 members: over that day (every sale in range), over a day without sales (what a
// report costs beside a long history), the stores report, and, as the baseline from the same
// run, one bare aggregate that reads the day's earns and redemptions once (COUNT and SUM through
// the same index). docs/PERFORMANCE.md, "Reports".
func BenchmarkReports(b *testing.B) {
	h, _ := ingestHub(b, 1000, *reportPreload)
	ctx := context.Background()
	day := hub.ReportQuery{From: t0.Add(-12 * time.Hour), To: t0.Add(12 * time.Hour)}
	empty := hub.ReportQuery{From: t0.AddDate(0, -1, 0), To: t0.AddDate(0, -1, 1)}
	b.Run("summary-day", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.ReportSummary(ctx, day); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("summary-empty-day", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.ReportSummary(ctx, empty); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stores-day", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.ReportStores(ctx, day); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cohorts-day", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.ReportCohorts(ctx, day); err != nil {
				b.Fatal(err)
			}
		}
	})
	db := openRaw(b, whereOf(b, h.Store))
	b.Run("baseline-bare-aggregate-day", func(b *testing.B) {
		for b.Loop() {
			var n, sum int64
			if err := db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM deltas WHERE kind IN ('earn', 'redeem') AND event_at >= ? AND event_at < ?`,
				unixms.Of(day.From), unixms.Of(day.To)).Scan(&n, &sum); err != nil || n != int64(*reportPreload) {
				b.Fatalf("%d rows, %v", n, err)
			}
		}
	})
}
