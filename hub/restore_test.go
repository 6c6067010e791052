package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// After a restore from a backup, the hub has lost the leases it granted and refilled since the
// backup. A store's deltas dated in the restore window that spend from them are applied and
// flagged as restore conflicts, within bounds: a lease the hub never heard of is adopted once per
// store and budget, at the size the hub would have granted; a lease the backup has may be spent
// by one more lease's worth. Outside the window, and beyond those bounds, they are refused.
func TestRestoreAcceptsSpendingFromLostLeases(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	})
	fund(t, h, "m1", 5000)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	coffee := func(lease string) loyalty.Delta {
		d := redeem("s1", "m1", "coffee", 50)
		d.RuleVersion, d.OccurredAt, d.Leases = 2, now, map[string]string{"coffees": lease}
		return d
	}
	mustReject(t, h, "s1", coffee("lgrantedthenlost"), loyalty.EBUDGET)
	l1 := mustLeases(t, h, "s1")[0]
	size := l1.Granted // the hub's first grant: the size a lost lease is adopted at

	before, _, err := h.Epoch(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	next, err := h.Restored(ctx)
	if err != nil || next == before || next == 0 {
		t.Fatalf("Restored = %d, %v; want a new epoch other than %d", next, err, before)
	}
	if e, _, _ := h.Epoch(ctx, "s1"); e != next {
		t.Fatalf("the hub names epoch %d after the restore, want %d", e, next)
	}

	// A lost lease is adopted, up to the size the hub grants.
	for range size {
		mustApply(t, h, "s1", coffee("lgrantedthenlost"))
	}
	mustReject(t, h, "s1", coffee("lgrantedthenlost"), loyalty.EBUDGET)
	// Once per store and budget: another lease the hub never heard of is a forgery.
	mustReject(t, h, "s1", coffee("lanotherinvention"), loyalty.EBUDGET)
	found := false
	cs, _ := h.Conflicts(ctx, 100)
	for _, c := range cs {
		found = found || c.Kind == hub.ConflictRestore
	}
	if !found {
		t.Errorf("no restore conflict recorded: %+v", cs)
	}
	// The backup's lease may be spent by one lease's worth more than the backup says it holds.
	for range l1.Granted + size {
		mustApply(t, h, "s1", coffee(l1.ID))
	}
	mustReject(t, h, "s1", coffee(l1.ID), loyalty.EBUDGET)

	// A lease's life after the restore the window has closed.
	now = now.Add(h.Lease.TTL + h.Lease.Margin + time.Minute)
	if _, err := h.Pull(ctx, "s2", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	late := coffee("lgrantedthenlost2")
	late.Store = "s2"
	mustReject(t, h, "s2", late, loyalty.EBUDGET)
	// Nor can a store reopen it by dating a sale back into it: s2 pulled since the restore, so it
	// holds a lease made after it and adopts none.
	back := coffee("lgrantedthenlost3")
	back.Store, back.OccurredAt = "s2", t0.Add(2*time.Minute)
	mustReject(t, h, "s2", back, loyalty.EBUDGET)
}
