package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty/sim"
)

func simCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the deterministic fault simulator over many seeds and check every guarantee",
		Long: `sim runs the real hub and agent logic on SQLite files with a virtual clock and network:
random sales, redemptions, vouchers and refunds at stores and online; partitions, duplicated and
late messages, agent crashes between the hub's commit and the ack, hub restarts, lease expiry and
kill switches. After every step it checks that no budget's spent + leased quota exceeds its limit;
after healing, that nothing was lost or applied twice, that every view converged, that every
conflict was recorded and that offline limits held. A failing seed is printed with the invariant it
broke and replays exactly with --seed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, _ := cmd.Flags().GetInt("seeds")
			first, _ := cmd.Flags().GetUint64("seed")
			steps, _ := cmd.Flags().GetInt("steps")
			stores, _ := cmd.Flags().GetInt("stores")
			workers, _ := cmd.Flags().GetInt("parallel")
			broken, _ := cmd.Flags().GetBool("broken")
			if cmd.Flags().Changed("seed") && !cmd.Flags().Changed("seeds") {
				n = 1
			}
			cfg := sim.DefaultConfig(0)
			cfg.Steps, cfg.Stores, cfg.Broken = steps, stores, broken
			var mu sync.Mutex
			var total sim.Stats
			failed, done := 0, 0
			start := time.Now()
			err := sim.RunSeeds(cmd.Context(), cfg, first, n, workers, func(r *sim.Result) {
				mu.Lock()
				defer mu.Unlock()
				done++
				addStats(&total, r.Stats)
				if len(r.Violations) > 0 {
					failed++
					fmt.Printf("FAIL seed %d (replay: loyalty sim --seed %d):\n", r.Seed, r.Seed)
					for _, v := range r.Violations[:min(10, len(r.Violations))] {
						fmt.Printf("  %s\n", v)
					}
				}
				if done%1000 == 0 {
					fmt.Fprintf(os.Stderr, "%d/%d seeds, %d failed, %s\n", done, n, failed, time.Since(start).Round(time.Second))
				}
			})
			if err != nil {
				return err
			}
			share := 0.0
			if total.OfflineAttempts > 0 {
				share = 100 * float64(total.OfflineApproved) / float64(total.OfflineAttempts)
			}
			fmt.Printf(`seeds %d..%d: %d run, %d failed, in %s (%d steps, %d stores each, %d workers)
deltas approved %d; crashes %d, hub restarts %d, partitions %d, duplicate pushes %d, late redeliveries %d, kill switches %d
offline redemption attempts %d: approved locally %d (%.1f%%), refused for quota %d, by policy %d, for points %d
quota stranded in expired leases before the final heal: %d in all (%.1f per run); after healing: %d
conflicts recorded %d
`, first, first+uint64(n)-1, done, failed, time.Since(start).Round(time.Millisecond), steps, stores, workers,
				total.Deltas, total.Crashes, total.HubRestarts, total.Partitions, total.DuplicatePushes, total.LateRedeliveries, total.KillSwitches,
				total.OfflineAttempts, total.OfflineApproved, share, total.OfflineNoQuota, total.OfflinePolicy, total.OfflineNoPoints,
				total.StrandedBeforeHeal, float64(total.StrandedBeforeHeal)/float64(max(done, 1)), total.StrandedAfter, total.Conflicts)
			if failed > 0 {
				return fmt.Errorf("%d of %d seeds broke an invariant", failed, done)
			}
			return nil
		},
	}
	cmd.Flags().Int("seeds", 100, "how many seeds to run")
	cmd.Flags().Uint64("seed", 1, "first seed (alone: replay just this one)")
	cmd.Flags().Int("steps", sim.DefaultConfig(0).Steps, "steps per run")
	cmd.Flags().Int("stores", sim.DefaultConfig(0).Stores, "stores per run")
	cmd.Flags().Int("parallel", runtime.NumCPU(), "runs at once")
	cmd.Flags().Bool("broken", false, "break the hub on purpose (leases not counted) to see the checker catch it")
	return cmd
}

func addStats(t *sim.Stats, s sim.Stats) {
	t.Steps += s.Steps
	t.Deltas += s.Deltas
	t.OfflineAttempts += s.OfflineAttempts
	t.OfflineApproved += s.OfflineApproved
	t.OfflineNoQuota += s.OfflineNoQuota
	t.OfflinePolicy += s.OfflinePolicy
	t.OfflineNoPoints += s.OfflineNoPoints
	t.StrandedBeforeHeal += s.StrandedBeforeHeal
	t.StrandedAfter += s.StrandedAfter
	t.Conflicts += s.Conflicts
	t.Crashes += s.Crashes
	t.HubRestarts += s.HubRestarts
	t.Partitions += s.Partitions
	t.DuplicatePushes += s.DuplicatePushes
	t.LateRedeliveries += s.LateRedeliveries
	t.KillSwitches += s.KillSwitches
}
