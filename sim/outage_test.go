package sim_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/sim"
)

// TestOutageAvailability runs the outage profile (a fifth of the stores cut off for 8 hours in the
// middle of a busy day, after a day of demand) and holds it to its targets: the cut-off stores
// approve at least 99% of the redemptions the chain-wide budgets had room for, no guarantee
// breaks, and no quota is left stranded once every store has healed and synced. Seeds 1 to 10
// (4 with -short); replay one with `loyalty sim --profile outage --seed N --json`. Under the race
// detector, one smaller run checks the guarantees only: a handful of offline redemptions cannot
// measure 99%.
func TestOutageAvailability(t *testing.T) {
	n := 10
	if testing.Short() {
		n = 4
	}
	cfg := sim.DefaultOutageConfig(0)
	if raceEnabled {
		n, cfg.Stores = 1, 5
	}
	runs, err := sim.RunOutageSeeds(context.Background(), cfg, 1, n, runtime.NumCPU())
	if err != nil {
		t.Fatal(err)
	}
	s := sim.SummarizeOutage(cfg, runs)
	t.Logf("seeds %v: offline approval within budget %.4f (%d of %d; worst seed %d: %.4f), connected %.4f, online channel %.4f; "+
		"violations %d, stranded after heal %d, reclaimed %d, budgets %+v",
		s.Seeds, s.OfflineApprovalWithinBudget, s.OfflineApproved, s.OfflineWithinBudget, s.WorstSeed, s.WorstApproval,
		s.ConnectedApprovalWithinBudget, s.WebApprovalWithinBudget, s.Violations, s.StrandedAfterHeal, s.Reclaimed, s.Budgets)
	if s.OfflineWithinBudget < 100*n && !raceEnabled {
		t.Errorf("only %d offline redemptions within budget in %d runs: the profile tests too little", s.OfflineWithinBudget, n)
	}
	if s.OfflineApprovalWithinBudget < 0.99 && !raceEnabled {
		t.Errorf("offline approval within budget %.4f, want at least 0.99; replay: %s", s.OfflineApprovalWithinBudget, s.Replay)
	}
	if s.Violations != 0 {
		t.Errorf("%d violations; replay: %s\n%v", s.Violations, s.Replay, s.ViolationDetails)
	}
	if s.StrandedAfterHeal != 0 {
		t.Errorf("%d units of quota stranded after every store healed and synced", s.StrandedAfterHeal)
	}
	for _, b := range s.Budgets {
		if b.UsedMin < 0.2 || b.UsedMax > 0.8 {
			t.Errorf("budget %s ended %.0f%% to %.0f%% used; the profile means 30 to 70%%", b.ID, 100*b.UsedMin, 100*b.UsedMax)
		}
	}
}
