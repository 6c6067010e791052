package hub_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

var outstandingSeed = flag.Uint64("outstanding.seed", 0, "replay TestOutstandingIsTheSumOfOpenLeases with this seed (0: a new one)")

// TestOutstandingIsTheSumOfOpenLeases: whatever is written to leases (new leases, spending,
// more quota, ending, settling, spending past the grant), Tx.Outstanding of each budget is the sum
// of MAX(granted - consumed, 0) over its leases not settled. SQLite keeps it as a running total,
// PostgreSQL sums; both must agree with the leases themselves. Random operations, seeded.
func TestOutstandingIsTheSumOfOpenLeases(t *testing.T) {
	rng, _ := seeded(t, *outstandingSeed, "outstanding.seed")
	ctx := context.Background()
	s := openStore(t, newDatabase(t))
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	budgets := []string{"b1", "b2"}
	leases := map[string]hub.Lease{}
	for step := range 300 {
		var l hub.Lease
		if len(leases) == 0 || rng.IntN(3) == 0 {
			id := fmt.Sprintf("l%03d", step)
			l = hub.Lease{ID: id, Store: fmt.Sprintf("s%d", rng.IntN(5)), Budget: budgets[rng.IntN(2)], Granted: rng.Int64N(100),
				State: "active", ExpiresAt: at.Add(time.Hour), CreatedAt: at}
		} else {
			for _, l = range leases { // any one
				break
			}
			switch rng.IntN(4) {
			case 0:
				l.Consumed += rng.Int64N(60) // may pass the grant: offline spending
			case 1:
				l.Granted += rng.Int64N(50)
			case 2:
				l.State = []string{"active", "ended"}[rng.IntN(2)]
			case 3:
				l.State = "settled"
			}
		}
		leases[l.ID] = l
		if err := s.Update(ctx, func(tx hub.Tx) error { return tx.PutLease(ctx, l, hub.LeaseEvent{}) }); err != nil {
			t.Fatalf("step %d: put lease %+v: %v", step, l, err)
		}
		want := map[string]int64{}
		for _, l := range leases {
			if l.State != "settled" {
				want[l.Budget] += max(l.Granted-l.Consumed, 0)
			}
		}
		err := s.View(ctx, func(tx hub.Tx) error {
			for _, b := range budgets {
				got, err := tx.Outstanding(ctx, b)
				if err != nil {
					return err
				}
				if got != want[b] {
					return fmt.Errorf("budget %s: outstanding %d, want %d", b, got, want[b])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("step %d, after %+v: %v", step, l, err)
		}
	}
}
