package hub_test

import (
	"context"
	"testing"
)

// BenchmarkIngestWebhook is BenchmarkIngest with an endpoint that takes every event type
// registered: each pushed sale also writes a points.earned event and its delivery, in the batch's
// transaction. Compare with BenchmarkIngest in the same run (no endpoint: one read per batch).
func BenchmarkIngestWebhook(b *testing.B) {
	ctx := context.Background()
	h, p := ingestHub(b, *ingestMembers, *ingestPreload)
	addWebhookB(b, h)
	const batch = 500
	b.ResetTimer()
	cpu0 := cpuTime()
	if err := pushEarns(ctx, h, p, "s1", 0, b.N*batch, batch, *ingestMembers); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "deltas/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/delta")
}
