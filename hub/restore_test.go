package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// After a restore from a backup, the hub has lost the leases it granted since the backup; a
// store's deltas spent from one, made before the restore (or within a lease's life after it),
// are applied and flagged as restore conflicts. Before any restore, and long after one, a lease
// the hub does not know is a forgery, refused.
func TestRestoreAcceptsSpendingFromLostLeases(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	})
	fund(t, h, "m1", 1000)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	coffee := func(lease string) loyalty.Delta {
		d := redeem("s1", "m1", "coffee", 50)
		d.RuleVersion, d.OccurredAt, d.Leases = 2, now, map[string]string{"coffees": lease}
		return d
	}
	mustReject(t, h, "s1", coffee("lgrantedthenlost"), loyalty.EBUDGET)

	epoch, _, err := h.Epoch(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	next, err := h.Restored(ctx)
	if err != nil || next == epoch || next == 0 {
		t.Fatalf("Restored = %d, %v; want a new epoch other than %d", next, err, epoch)
	}
	if e, _, _ := h.Epoch(ctx, "s1"); e != next {
		t.Fatalf("the hub names epoch %d after the restore, want %d", e, next)
	}
	mustApply(t, h, "s1", coffee("lgrantedthenlost"))
	cs, err := h.Conflicts(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range cs {
		found = found || c.Kind == hub.ConflictRestore
	}
	if !found {
		t.Errorf("no restore conflict recorded: %+v", cs)
	}
	bs, _ := h.Budgets(ctx)
	if bs[0].Spent != 1 {
		t.Errorf("coffees spent %d, want the restored redemption counted (1)", bs[0].Spent)
	}
	// The backup's figures for a lease it has are older than the store's (refills lost): spending
	// past them is applied too, in the same window.
	l1 := mustLeases(t, h, "s1")[0]
	for range l1.Granted + 1 {
		mustApply(t, h, "s1", coffee(l1.ID))
	}
	// A lease's life after the restore, an unknown lease is refused again.
	now = now.Add(h.Lease.TTL + h.Lease.Margin + time.Minute)
	mustReject(t, h, "s1", coffee("lgrantedthenlost"), loyalty.EBUDGET)
}
