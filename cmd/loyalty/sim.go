package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
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
late messages, agent crashes between the hub's commit and the ack, hub restarts, lease expiry,
kill switches and agents whose estimate of the hub's clock is off by up to 6 s. After every step it checks that no budget's spent + leased quota exceeds its limit;
after healing, that nothing was lost or applied twice, that every view converged, that every
conflict was recorded and that offline limits held. A failing seed is printed with the invariant it
broke and replays exactly with --seed.

Hostile stores (--hostile, 2 by default) are extra registered stores that push forged deltas
through the hub's Push, each forging one claim: a tier, a country, an event time, a time zone with
a campaign, a rule version, a budget lease, amounts, lines or points, another store's delta or
identity, a reversal, invalid UTF-8, a kind only the hub makes. Every forged delta must be
rejected, and no balance, ledger, budget or lease may move; their honest deltas must be applied.
--forgeries and --skip-forgeries choose the kinds (comma-separated names, listed in the summary).

--profile outage measures availability instead (docs/BUDGETS.md, "Availability"): a chain of
--stores stores (10 by default) redeeming on a day curve, budgets that end 30 to 70% used, and a
fifth of the stores cut off for 8 hours from 10:00 UTC on the second day, after a day of demand
the hub sizes leases from. It reports the share of the redemptions tried at the cut-off stores,
that the chain-wide budgets had room for, that the stores approved on their own
(offline_approval_within_budget), beside the checks of every run (violations, quota stranded after
healing). Seeds 1 to 10 by default; --lease-ttl replaces the hub's leases.ttl, to compare.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch profile, _ := cmd.Flags().GetString("profile"); profile {
			case "outage":
				return simOutage(cmd)
			case "", "adversarial":
			default:
				return fmt.Errorf("unknown profile %q: the profiles are adversarial (the default) and outage", profile)
			}
			n, _ := cmd.Flags().GetInt("seeds")
			first, _ := cmd.Flags().GetUint64("seed")
			steps, _ := cmd.Flags().GetInt("steps")
			stores, _ := cmd.Flags().GetInt("stores")
			workers, _ := cmd.Flags().GetInt("parallel")
			broken, _ := cmd.Flags().GetBool("broken")
			hostile, _ := cmd.Flags().GetInt("hostile")
			only, _ := cmd.Flags().GetStringSlice("forgeries")
			skip, _ := cmd.Flags().GetStringSlice("skip-forgeries")
			if cmd.Flags().Changed("seed") && !cmd.Flags().Changed("seeds") {
				n = 1
			}
			cfg := sim.DefaultConfig(0)
			cfg.Steps, cfg.Stores, cfg.Broken, cfg.Hostile = steps, stores, broken, hostile
			kinds, err := forgeryKinds(only, skip)
			if err != nil {
				return err
			}
			cfg.Forgeries = kinds
			var mu sync.Mutex
			var total sim.Stats
			var offTarget []string
			failed, done := 0, 0
			start := time.Now()
			err = sim.RunSeeds(cmd.Context(), cfg, first, n, workers, func(r *sim.Result) {
				mu.Lock()
				defer mu.Unlock()
				done++
				addStats(&total, r.Stats)
				for _, o := range r.OffTarget {
					if len(offTarget) < 5 {
						offTarget = append(offTarget, fmt.Sprintf("seed %d %s", r.Seed, o))
					}
				}
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
			if hostile > 0 {
				fmt.Printf(`hostile stores %d per run: %d sessions, %d forged deltas in %d pushes; applied %d (must be 0), pushes that moved the hub's state %d (must be 0)
  refused for their forgery %d, for another reason %d; their honest deltas %d (all must be applied)
  per forgery, tried/refused for it/applied:
`, hostile, total.HostileSessions, total.HostileForged, total.HostilePushes, total.HostileApplied, total.HostileMoved,
					total.HostileForged-total.HostileApplied-total.HostileOffTarget, total.HostileOffTarget, total.HostileControls)
				for i, f := range sim.Forgeries() {
					mark := " "
					if total.ForgedApplied[f] > 0 {
						mark = "!"
					}
					fmt.Printf("  %s%-21s %5d/%5d/%d", mark, f, total.Forged[f], total.ForgedOnTarget[f], total.ForgedApplied[f])
					if i%3 == 2 || i == len(sim.Forgeries())-1 {
						fmt.Println()
					}
				}
				for _, o := range offTarget {
					fmt.Printf("  refused for another reason: %s\n", o)
				}
			}
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
	cmd.Flags().Int("hostile", sim.DefaultConfig(0).Hostile, "hostile stores per run, pushing forged deltas (0: none)")
	cmd.Flags().StringSlice("forgeries", nil, "only these kinds of forgery (comma-separated; default: all)")
	cmd.Flags().StringSlice("skip-forgeries", nil, "not these kinds of forgery (comma-separated)")
	cmd.Flags().String("profile", "adversarial", "adversarial: faults and forgeries, every guarantee checked; outage: availability through a long outage")
	cmd.Flags().Duration("lease-ttl", 0, "outage profile: the hub's leases.ttl (default 12h), e.g. 15m to compare with the old leases")
	cmd.Flags().Bool("json", false, "outage profile: print one JSON object")
	return cmd
}

// simOutage runs the outage profile: `loyalty sim --profile outage`.
func simOutage(cmd *cobra.Command) error {
	f := cmd.Flags()
	n, _ := f.GetInt("seeds")
	first, _ := f.GetUint64("seed")
	workers, _ := f.GetInt("parallel")
	asJSON, _ := f.GetBool("json")
	cfg := sim.DefaultOutageConfig(0)
	if f.Changed("stores") {
		cfg.Stores, _ = f.GetInt("stores")
	}
	cfg.LeaseTTL, _ = f.GetDuration("lease-ttl")
	switch {
	case f.Changed("seed") && !f.Changed("seeds"):
		n = 1
	case !f.Changed("seeds"):
		n = 10
	}
	if cfg.Stores < 2 {
		return fmt.Errorf("--stores must be at least 2 for the outage profile (a fifth of them are cut off)")
	}
	if cfg.LeaseTTL != 0 && cfg.LeaseTTL < time.Minute {
		return fmt.Errorf("--lease-ttl must be at least 1m")
	}
	start := time.Now()
	runs, err := sim.RunOutageSeeds(cmd.Context(), cfg, first, n, workers)
	if err != nil {
		return err
	}
	s := sim.SummarizeOutage(cfg, runs)
	if asJSON {
		if err := writeJSON(cmd.OutOrStdout(), s); err != nil {
			return err
		}
	} else {
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "outage profile, seeds %d..%d, in %s: %d stores, %d of them cut off for %s (lease ttl %s)\n",
			first, first+uint64(n)-1, time.Since(start).Round(time.Millisecond), s.Stores, s.OfflineStores, s.Outage, s.LeaseTTL)
		for _, b := range s.Budgets {
			fmt.Fprintf(out, "  budget %s (%s): %.0f%% to %.0f%% used\n", b.ID, b.Metric, 100*b.UsedMin, 100*b.UsedMax)
		}
		fmt.Fprintf(out, "offline redemptions the budgets had room for: %d of %d tried; approved at the store: %d (%.2f%%; worst seed %d: %.2f%%)\n",
			s.OfflineWithinBudget, s.OfflineAttempts, s.OfflineApproved, 100*s.OfflineApprovalWithinBudget, s.WorstSeed, 100*s.WorstApproval)
		fmt.Fprintf(out, "approved within budget at connected stores %.2f%%, online %.2f%%; quota reclaimed from idle leases %d\n",
			100*s.ConnectedApprovalWithinBudget, 100*s.WebApprovalWithinBudget, s.Reclaimed)
		fmt.Fprintf(out, "cut-off stores held at most %.1f%% of the limits; violations %d; quota stranded after healing %d\nreplay: %s\n",
			100*s.HeldOffline, s.Violations, s.StrandedAfterHeal, s.Replay)
		for _, v := range s.ViolationDetails {
			fmt.Fprintf(out, "  %s\n", v)
		}
	}
	if s.Violations > 0 {
		return fmt.Errorf("%d violations; replay with `%s`", s.Violations, s.Replay)
	}
	return nil
}

// forgeryKinds returns the forgeries named in only (all if empty) less those in skip.
func forgeryKinds(only, skip []string) ([]sim.Forgery, error) {
	kinds := sim.Forgeries()
	if len(only) > 0 {
		kinds = kinds[:0:0]
		for _, name := range only {
			f, err := sim.ParseForgery(strings.TrimSpace(name))
			if err != nil {
				return nil, err
			}
			kinds = append(kinds, f)
		}
	}
	for _, name := range skip {
		f, err := sim.ParseForgery(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		for i := len(kinds) - 1; i >= 0; i-- {
			if kinds[i] == f {
				kinds = append(kinds[:i], kinds[i+1:]...)
			}
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("--forgeries and --skip-forgeries leave no kind of forgery")
	}
	return kinds, nil
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
	t.HostileSessions += s.HostileSessions
	t.HostilePushes += s.HostilePushes
	t.HostileForged += s.HostileForged
	t.HostileApplied += s.HostileApplied
	t.HostileMoved += s.HostileMoved
	t.HostileOffTarget += s.HostileOffTarget
	t.HostileControls += s.HostileControls
	t.Forged.Add(s.Forged)
	t.ForgedOnTarget.Add(s.ForgedOnTarget)
	t.ForgedApplied.Add(s.ForgedApplied)
}
