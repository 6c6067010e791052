package hub_test

import (
	"context"
	"strings"
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

// TestRestoreBoundsFollowTheBudget: a lease lost with a restore is judged by its own budget's
// lease_ttl (48h here, past the hub-wide 12h), and may have been as large as the store's demand
// before the backup asked for (15 coffees: 1.5 × the 10 of its busiest stretch, more than its
// share of 10).
func TestRestoreBoundsFollowTheBudget(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40,
			LeaseTTL: loyalty.Duration(48 * time.Hour)}}
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
	l1 := mustLeases(t, h, "s1")[0]
	if l1.Granted != 10 {
		t.Fatalf("first lease of 40 at share 0.25: %d", l1.Granted)
	}
	for range l1.Granted {
		mustApply(t, h, "s1", coffee(l1.ID))
	}
	now = now.Add(2 * time.Hour)
	fund(t, h, "m2", 100) // the last change the backup holds
	now = now.Add(time.Minute)
	if _, err := h.Restored(ctx); err != nil {
		t.Fatal(err)
	}
	// 20 hours on: past the hub-wide TTL, within the budget's.
	now = now.Add(20 * time.Hour)
	for i := range 15 {
		if r := pushOK(t, h, "s1", coffee("llostinrestore")).Results[0]; r.Status != lsync.StatusApplied {
			t.Fatalf("coffee %d from the lost lease, 20h after the restore: %+v", i+1, r)
		}
	}
	mustReject(t, h, "s1", coffee("llostinrestore"), loyalty.EBUDGET)
	// Past the budget's TTL the window has closed.
	now = now.Add(29 * time.Hour)
	late := coffee("llostinrestore2")
	late.Store, late.Member = "s2", "m1"
	if _, err := h.Pull(ctx, "s2", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	mustReject(t, h, "s2", late, loyalty.EBUDGET)
}

// A restored hub lost the scope rows stores gained after the backup, while the stores' replicas
// kept those members. It takes no redemption of a member the store no longer holds on trust,
// whether dated between the backup and the restore (made then, sent again) or after it by a
// store that has not synced since: a store that kept from syncing must not spend any member's
// points. The member's code, which the agent sends with a redemption made from a scan, is the
// proof.
func TestRestoreTakesRedemptionsOfLostScopes(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	fund(t, h, "m2", 900) // m2 is s2's: s1 does not hold them; the backup is of this moment
	now = now.Add(time.Hour)
	if _, err := h.Restored(ctx); err != nil {
		t.Fatal(err)
	}
	tote := func(at time.Time) loyalty.Delta {
		d := redeem("s1", "m2", "tote", 250)
		d.OccurredAt = at
		return d
	}
	unhold := func() {
		t.Helper()
		if err := h.Unsubscribe(ctx, "s1", []string{"m2"}); err != nil { // the scope the redemption brought back
			t.Fatal(err)
		}
	}
	mustReject(t, h, "s1", tote(t0.Add(30*time.Minute)), loyalty.EUNAUTHORIZED)
	mustApply(t, h, "s1", scanned(t, h, tote(t0.Add(30*time.Minute))))
	unhold()
	now = now.Add(time.Hour)
	mustReject(t, h, "s1", tote(now.Add(-time.Minute)), loyalty.EUNAUTHORIZED) // s1 has not synced since the restore
	mustApply(t, h, "s1", scanned(t, h, tote(now.Add(-time.Minute))))
	unhold()
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000, Flushed: true}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	mustReject(t, h, "s1", tote(now), loyalty.EUNAUTHORIZED)
}

// TestCarryOver_OnlyTheSameMembersAndStores: a restore carries over an erasure only to the member
// the replaced database erased, and a store's token only to that store: a member or store of the
// same id created at another time (a --replaced database of another hub, a staging copy) is left
// as restored, and the restore says so (an erasure cannot be undone; another hub's token would
// lock the store's agent out). The same member, erased since the backup, is erased again.
func TestCarryOver_OnlyTheSameMembersAndStores(t *testing.T) {
	ctx := context.Background()
	replaced, restored := openHub(t), openHub(t)
	at := t0.Add(time.Hour)
	restored.Now = func() time.Time { return at }
	for _, h := range []*hub.Hub{replaced, restored} {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: "x1", Name: "Ann", HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := replaced.EraseMember(ctx, "x1"); err != nil {
		t.Fatal(err)
	}
	said, err := restored.CarryOver(ctx, replaced)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := restored.Member(ctx, "x1", 0); err != nil || m.Erased || m.Name != "Ann" {
		t.Errorf("another hub's x1 after the carry-over: %+v, %v; want it as it was", m, err)
	}
	if !strings.Contains(strings.Join(said, "\n"), "member x1 left as restored") {
		t.Errorf("the carry-over said %q; want that x1 was left as restored", said)
	}
	// Nor a store of the same id added at another time: its token is the restored hub's own.
	// (openHub's stores s1 and s2 were added at t0 in both: they carry over as they are.)
	_, theirs, err := replaced.CreateStoreIn(ctx, "zz1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, ours, err := restored.CreateStoreIn(ctx, "zz1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if said, err = restored.CarryOver(ctx, replaced); err != nil {
		t.Fatal(err)
	}
	if restored.Authenticate(ctx, "zz1", ours) != nil || restored.Authenticate(ctx, "zz1", theirs) == nil ||
		!strings.Contains(strings.Join(said, "\n"), "store zz1 left as restored") {
		t.Errorf("another hub's store zz1 after the carry-over (said %q): want the restored hub's own token kept, and a line that says so", said)
	}
	// The same member (created at the same time in both), erased since: erased again.
	if _, err := replaced.CreateMember(ctx, loyalty.Member{ID: "x2", Name: "Bo", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	restored.Now = replaced.Now
	if _, err := restored.CreateMember(ctx, loyalty.Member{ID: "x2", Name: "Bo", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := replaced.EraseMember(ctx, "x2"); err != nil {
		t.Fatal(err)
	}
	if said, err = restored.CarryOver(ctx, replaced); err != nil {
		t.Fatal(err)
	}
	if m, err := restored.Member(ctx, "x2", 0); err != nil || !m.Erased || m.Name != "" {
		t.Errorf("x2 after the carry-over: %+v, %v (said %q); want it erased again", m, err, said)
	}
}
