package sim_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/sim"
)

// TestSeeds runs a few hundred seeds (SIM_SEEDS to change; SIM_SEED=S to replay one) and fails
// on any broken guarantee, printing the seed that broke it.
//
// Unless SIM_SEEDS or SIM_SEED names the seeds, the run also stops starting seeds once its time
// budget is spent, so `go test ./...` on a slow or busy machine stays well inside go test's
// timeout. The seeds always run from the first, in order, and the log says how many ran; CI names
// its seeds, so it always runs all of them.
func TestSeeds(t *testing.T) {
	n, first := 300, uint64(1)
	if testing.Short() || raceEnabled {
		n = 40
	}
	named := false
	if v, err := strconv.Atoi(os.Getenv("SIM_SEEDS")); err == nil {
		n, named = v, true
	}
	if v, err := strconv.ParseUint(os.Getenv("SIM_SEED"), 10, 64); err == nil {
		first, n, named = v, 1, true
	}
	budget := seedBudget
	if d, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(d)/3)
	}
	workers := runtime.NumCPU()
	var mu sync.Mutex
	var approved, attempts, failed int
	report := func(r *sim.Result) {
		mu.Lock()
		defer mu.Unlock()
		approved += r.Stats.OfflineApproved
		attempts += r.Stats.OfflineAttempts
		if len(r.Violations) > 0 {
			failed++
			t.Errorf("seed %d broke %d invariant(s); replay with SIM_SEED=%d go test ./sim/ -run TestSeeds or `loyalty sim --seed %d`:\n  %s",
				r.Seed, len(r.Violations), r.Seed, r.Seed, strings.Join(r.Violations[:min(5, len(r.Violations))], "\n  "))
		}
	}
	start := time.Now()
	ran := 0
	for ran < n && (ran == 0 || named || time.Since(start) < budget) {
		k := min(4*workers, n-ran)
		if err := sim.RunSeeds(context.Background(), sim.DefaultConfig(0), first+uint64(ran), k, workers, report); err != nil {
			t.Fatal(err)
		}
		ran += k
	}
	if ran < n {
		t.Logf("time budget of %s spent: ran %d of %d seeds (SIM_SEEDS=%d runs them all)", budget.Round(time.Second), ran, n, n)
	}
	t.Logf("seeds %d..%d: %d failed; offline redemptions approved locally: %d of %d attempts", first, first+uint64(ran)-1, failed, approved, attempts)
}

// seedBudget bounds TestSeeds when its seeds are not named, and so does a third of the time left
// before go test's deadline; on a quiet two-core machine its 300 seeds take about 160 seconds.
const seedBudget = 4 * time.Minute

// TestCheckerCatchesBrokenHub: a hub that grants leases without counting the quota already
// leased out overspends a budget, and the checker must say so.
func TestCheckerCatchesBrokenHub(t *testing.T) {
	cfg := sim.DefaultConfig(0)
	cfg.Broken = true
	caught := 0
	var example string
	for seed := uint64(1); seed <= 20; seed++ {
		cfg.Seed = seed
		r, err := sim.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range r.Violations {
			if strings.Contains(v, "outstanding") && strings.Contains(v, "> limit") {
				caught++
				example = v
				break
			}
		}
	}
	if caught == 0 {
		t.Fatal("the checker found no budget overspend in 20 seeds of a hub that ignores leased quota")
	}
	t.Logf("caught in %d of 20 seeds, e.g. %s", caught, example)
}

// TestReplayIsDeterministic: the same seed gives the same run.
func TestReplayIsDeterministic(t *testing.T) {
	a, err := sim.Run(context.Background(), sim.DefaultConfig(42))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sim.Run(context.Background(), sim.DefaultConfig(42))
	if err != nil {
		t.Fatal(err)
	}
	if a.Stats != b.Stats {
		t.Fatalf("seed 42 twice:\n%+v\n%+v", a.Stats, b.Stats)
	}
}

// TestHostileStores runs a few dozen seeds in which hostile stores push forged deltas (every
// kind of sim.Forgeries) to the hub's sync server. None may be applied nor move a balance, a ledger
// or a budget; their honest deltas must be applied; and every kind must have been tried and
// refused for its own forgery at least once, so a forgery that never runs, or that the hub
// refuses for another reason than the claim it forges, fails the test too.
func TestHostileStores(t *testing.T) {
	n := 36
	if raceEnabled {
		n = 12
	}
	cfg := sim.DefaultConfig(0)
	if cfg.Hostile == 0 {
		cfg.Hostile = 2
	}
	var mu sync.Mutex
	var total sim.Stats
	var offTarget []string
	err := sim.RunSeeds(context.Background(), cfg, 1, n, runtime.NumCPU(), func(r *sim.Result) {
		mu.Lock()
		defer mu.Unlock()
		total.HostileForged += r.Stats.HostileForged
		total.HostileApplied += r.Stats.HostileApplied
		total.HostileMoved += r.Stats.HostileMoved
		total.HostileControls += r.Stats.HostileControls
		total.HostileOffTarget += r.Stats.HostileOffTarget
		total.Forged.Add(r.Stats.Forged)
		total.ForgedOnTarget.Add(r.Stats.ForgedOnTarget)
		total.ForgedApplied.Add(r.Stats.ForgedApplied)
		offTarget = append(offTarget, r.OffTarget...)
		if len(r.Violations) > 0 {
			t.Errorf("seed %d broke %d invariant(s); replay with `loyalty sim --seed %d`:\n  %s",
				r.Seed, len(r.Violations), r.Seed, strings.Join(r.Violations[:min(5, len(r.Violations))], "\n  "))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if total.HostileApplied > 0 || total.HostileMoved > 0 {
		t.Errorf("%d forged deltas applied, %d hostile pushes moved the hub's state", total.HostileApplied, total.HostileMoved)
	}
	if total.HostileControls == 0 {
		t.Error("the hostile stores pushed no honest deltas")
	}
	for _, f := range sim.Forgeries() {
		switch {
		case total.Forged[f] == 0:
			t.Errorf("forgery %s was never tried in %d seeds", f, n)
		case total.ForgedOnTarget[f] == 0 && total.ForgedApplied[f] == 0:
			t.Errorf("forgery %s was tried %d times but never refused for what it forges", f, total.Forged[f])
		}
		t.Logf("%-21s tried %4d, refused for it %4d, applied %d", f, total.Forged[f], total.ForgedOnTarget[f], total.ForgedApplied[f])
	}
	for _, o := range offTarget[:min(len(offTarget), 5)] {
		t.Logf("refused for another reason: %s", o)
	}
	t.Logf("seeds 1..%d: %d forged deltas, %d applied, %d refused for another reason than their forgery; %d honest deltas from hostile stores",
		n, total.HostileForged, total.HostileApplied, total.HostileOffTarget, total.HostileControls)
}
