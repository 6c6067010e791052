package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// What stores report of their outboxes shows in the reports as they said it, on the hub's clock,
// bounded: a hostile store's negative, huge or future numbers are clamped and flagged. It is kept
// in the database, so a hub started anew shows the last report.
func TestReports_UnsyncedAsReported(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	oldest := t0.Add(-2*time.Hour - time.Minute) // the store's clock, a minute behind the hub's
	if err := h.Seen(ctx, "s1", lsync.Health{Connected: true, Ping: true, At: t0, ClockOffsetMS: 60_000, Outbox: 3,
		Unsynced: &lsync.Unsynced{Deltas: 3, PointsEarned: 40, PointsRedeemed: 150, Budgets: map[string]int64{"coffees": 2}, OldestAt: oldest.UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	many := map[string]int64{"": 1}
	for i := range 70 {
		many[fmt.Sprintf("b%02d", i)] = -1
	}
	if err := h.Seen(ctx, "s2", lsync.Health{Connected: true, Ping: true, At: t0, Outbox: 1,
		Unsynced: &lsync.Unsynced{Deltas: 1 << 62, PointsEarned: math.MaxInt64, PointsRedeemed: -5, Budgets: many, OldestAt: math.MaxInt64}}); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, h *hub.Hub) {
		t.Helper()
		q := hub.ReportQuery{From: t0.Add(-24 * time.Hour), To: t0.Add(time.Hour)}
		r, err := h.ReportStores(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]hub.StoreReport{}
		for _, s := range r.Stores {
			by[s.Store] = s
		}
		u1 := by["s1"].Unsynced
		if u1 == nil || u1.ReportedBy != "store" || u1.Deltas != 3 || u1.PointsEarned != 40 || u1.PointsRedeemed != 150 ||
			u1.Budgets["coffees"] != 2 || !u1.OldestAt.Equal(t0.Add(-2*time.Hour)) || u1.Clamped {
			t.Errorf("s1 unsynced %+v; want 3 deltas, 40 earned, 150 redeemed, 2 coffees, oldest 2h ago on the hub's clock", u1)
		}
		if got := by["s1"].BacklogAgeMS; got != (2 * time.Hour).Milliseconds() {
			t.Errorf("s1 backlog age %d ms, want 2h", got)
		}
		u2 := by["s2"].Unsynced
		if u2 == nil || !u2.Clamped || u2.Deltas != loyalty.MaxBalance || u2.PointsEarned != loyalty.MaxBalance || u2.PointsRedeemed != 0 ||
			len(u2.Budgets) != 64 || u2.Budgets["b00"] != 0 || !u2.OldestAt.Equal(t0) {
			t.Errorf("s2 unsynced %+v; want clamped: MaxBalance deltas and points, 0 redeemed, 64 budgets at 0, oldest now", u2)
		}
		if by["s2"].BacklogAgeMS != 0 {
			t.Errorf("s2 backlog age %d, want 0 (a time in the future is now)", by["s2"].BacklogAgeMS)
		}
		s, err := h.ReportSummary(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if u := s.Unsynced; u.Stores != 2 || u.PointsEarned != 40+loyalty.MaxBalance || u.PointsRedeemed != 150 || u.Budgets["coffees"] != 2 ||
			u.BacklogAgeMS != (2*time.Hour).Milliseconds() {
			t.Errorf("chain-wide unsynced %+v", u)
		}
		one, err := h.ReportSummary(ctx, hub.ReportQuery{From: q.From, To: q.To, Store: "s1"})
		if err != nil {
			t.Fatal(err)
		}
		if u := one.Unsynced; u.Stores != 1 || u.PointsEarned != 40 {
			t.Errorf("s1's summary unsynced %+v, want s1's alone", u)
		}
	}
	t.Run("live", func(t *testing.T) { check(t, h) })
	t.Run("restarted", func(t *testing.T) {
		again := hub.New(h.Store)
		again.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		again.Now = h.Now
		check(t, again)
	})
}
