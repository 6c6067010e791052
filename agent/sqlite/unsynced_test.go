package sqlite

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Unsynced counts what the outbox holds, and only that: acknowledged deltas leave the count, with
// what they spent of the leases.
func TestUnsyncedCountsTheOutbox(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u, err := s.Unsynced(ctx); err != nil || u.Deltas != 0 || u.Budgets != nil || u.OldestAt != 0 {
		t.Fatalf("empty outbox: %+v, %v; want nothing", u, err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(kind loyalty.Kind, points int64, at time.Time, use ...agent.LeaseUse) loyalty.Delta {
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: kind, Points: points, OccurredAt: at}
		if err := s.Update(ctx, func(tx agent.Tx) error { return tx.InsertDelta(ctx, d, at, use, true) }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := mk(loyalty.KindEarn, 12, t0)
	mk(loyalty.KindRedeem, -50, t0.Add(time.Minute), agent.LeaseUse{Lease: "l1", Budget: "coffees", Amount: 1})
	mk(loyalty.KindEarn, 30, t0.Add(2*time.Minute))
	mk(loyalty.KindRedeem, -100, t0.Add(3*time.Minute), agent.LeaseUse{Lease: "l1", Budget: "coffees", Amount: 1},
		agent.LeaseUse{Lease: "l2", Budget: "discount", Amount: 500})

	want := lsync.Unsynced{Deltas: 4, PointsEarned: 42, PointsRedeemed: 150, OldestAt: t0.UnixMilli(),
		Budgets: map[string]int64{"coffees": 2, "discount": 500}}
	got, err := s.Unsynced(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Deltas != want.Deltas || got.PointsEarned != want.PointsEarned || got.PointsRedeemed != want.PointsRedeemed ||
		got.OldestAt != want.OldestAt || !maps.Equal(got.Budgets, want.Budgets) {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	// The hub acknowledges the oldest: it leaves the count, and the next oldest is the oldest.
	if err := s.ApplyAck(ctx, &lsync.Ack{Results: []lsync.Result{{DeltaID: first.ID, Status: lsync.StatusApplied, Seq: 1}}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Unsynced(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Deltas != 3 || got.PointsEarned != 30 || got.OldestAt != t0.Add(time.Minute).UnixMilli() {
		t.Errorf("after the first was acknowledged: %+v; want 3 deltas, 30 points earned, the second's time", got)
	}
}
