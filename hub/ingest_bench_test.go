package hub_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/viper"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

var (
	ingestPreload = flag.Int("ingest.preload", 50000, "deltas BenchmarkIngest puts in the ledger before it measures")
	ingestMembers = flag.Int("ingest.members", 1000, "members BenchmarkIngest spreads its preload and its pushes over")
)

// readExampleProgram reads configs/program.yaml as `loyalty program set` does (YAML through JSON,
// so that the program's json tags are the one schema).
func readExampleProgram(tb testing.TB) loyalty.Program {
	tb.Helper()
	v := viper.New()
	v.SetConfigFile("../configs/program.yaml")
	if err := v.ReadInConfig(); err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(v.AllSettings())
	if err != nil {
		tb.Fatal(err)
	}
	var p loyalty.Program
	if err := json.Unmarshal(b, &p); err != nil {
		tb.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// ingestHub returns a hub with the example program (configs/program.yaml: spend tiers over a
// rolling 12 months), members b0000000… and a ledger preloaded with n sales through Hub.Push in
// batches of 1000, spread round robin over the members, so that each member has a history.
func ingestHub(tb testing.TB, members, n int) (*hub.Hub, *loyalty.Program) {
	tb.Helper()
	ctx := context.Background()
	h := openHub(tb)
	p := readExampleProgram(tb)
	if _, err := h.SetProgram(ctx, p); err != nil {
		tb.Fatal(err)
	}
	cur, err := h.Program(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	syncStores(tb, h)
	err = h.Store.Update(ctx, func(tx hub.Tx) error {
		for i := range members {
			v, err := tx.NextVersion(ctx)
			if err != nil {
				return err
			}
			m := loyalty.Member{ID: ingestMember(i), Tier: cur.Tiers.TierFor(0).ID, Version: v, CreatedAt: t0.AddDate(-1, 0, 0)}
			if err := tx.InsertMember(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := pushEarns(ctx, h, &cur, "s2", 0, n, 1000, members); err != nil {
		tb.Fatal(err)
	}
	return h, &cur
}

func ingestMember(i int) string { return fmt.Sprintf("b%07d", i) }

// ingestEarn is a sale at store to member of amount, with the points the program gives it at t0.
func ingestEarn(p *loyalty.Program, store, member string, amount int64, order string) loyalty.Delta {
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: member, Kind: loyalty.KindEarn, Amount: amount,
		Currency: p.Currency, OrderID: order, RuleVersion: p.Version, OccurredAt: t0}
	res, err := p.ComputeEarn(loyalty.EarnInput{Amount: d.Amount, Currency: d.Currency, At: d.EventTime(), Location: time.UTC})
	if err == nil {
		d.Points = res.Points
	}
	return d
}

// pushEarns pushes sales from..from+n as store, batch at a time, round robin over members, and
// fails on the first one the hub does not apply.
func pushEarns(ctx context.Context, h *hub.Hub, p *loyalty.Program, store string, from, n, batch, members int) error {
	ds := make([]loyalty.Delta, 0, batch)
	for i := from; i < from+n; i++ {
		ds = append(ds, ingestEarn(p, store, ingestMember(i%members), int64(100+i%5000), fmt.Sprint(store, "-", i)))
		if len(ds) < batch && i < from+n-1 {
			continue
		}
		ack, err := h.Push(ctx, store, ds)
		if err != nil {
			return err
		}
		if err := allApplied(ack, len(ds)); err != nil {
			return err
		}
		ds = ds[:0]
	}
	return nil
}

// BenchmarkIngest measures Hub.Push of batches of 500 sales of the example program onto a ledger
// of -ingest.preload deltas spread over -ingest.members members: the hub's ingest as `loyalty
// bench` measures it, small enough to profile (go test ./hub/ -run '^$' -bench Ingest
// -cpuprofile cpu.out). Compare with BenchmarkBareBatchedInsert, measured in the same run.
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	h, p := ingestHub(b, *ingestMembers, *ingestPreload)
	const batch = 500
	b.ResetTimer()
	cpu0 := cpuTime()
	if err := pushEarns(ctx, h, p, "s1", 0, b.N*batch, batch, *ingestMembers); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "deltas/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/delta")
}

// BenchmarkIngestSmallPushes measures what a chain's peak looks like to the writer: many stores
// at once, each pushing a sale or a few at a time (an agent pushes what its tills made in 10 ms),
// so that only group commit puts them together. 200 stores push 50 sales each, in pushes of 1
// and of 5, each store to 50 members of its own (at least 10,000 members: a member who shopped
// at many stores is in each one's scope, and every sale of theirs tells each of them); beside
// them, in the same run and onto the same ledger, as many sales in batches of 500 from one store
// (BenchmarkIngest's path).
func BenchmarkIngestSmallPushes(b *testing.B) {
	ctx := context.Background()
	const stores, each = 200, 50
	members := max(*ingestMembers, stores*each)
	h, p := ingestHub(b, members, *ingestPreload)
	for i := range stores {
		id := fmt.Sprintf("many%03d", i)
		if _, _, err := h.CreateStore(ctx, id, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := h.Pull(ctx, id, lsync.Pull{Limit: 1000}); err != nil { // the rule version is sent
			b.Fatal(err)
		}
		// A sale to each of its members first, untimed: the measured sales are of members in
		// the store's scope already, as most are. (The first sale of a member at a store also
		// writes the scope row, and would be counted in whichever part ran first.)
		if err := pushEarns(ctx, h, p, id, i*each, each, each, members); err != nil {
			b.Fatal(err)
		}
	}
	if err := pushEarns(ctx, h, p, "s1", 0, stores*each, 500, members); err != nil { // the same for the batches' store
		b.Fatal(err)
	}
	measure := func(name string, run func(n int) error) {
		var took, cpu time.Duration
		for n := range b.N {
			t0, cpu0 := time.Now(), cpuTime()
			if err := run(n); err != nil {
				b.Fatal(err)
			}
			took, cpu = took+time.Since(t0), cpu+cpuTime()-cpu0
		}
		deltas := float64(b.N * stores * each)
		b.ReportMetric(deltas/took.Seconds(), name+"-deltas/s")
		b.ReportMetric(float64(cpu.Microseconds())/deltas, name+"-cpu-µs/delta")
	}
	for _, size := range []int{1, 5} {
		measure(fmt.Sprint("pushes-of-", size), func(n int) error {
			errs := make(chan error, stores)
			for i := range stores {
				id := fmt.Sprintf("many%03d", i)
				go func() {
					var err error
					for k := 0; k < each && err == nil; k += size {
						ds := make([]loyalty.Delta, 0, size)
						for j := k; j < k+size; j++ {
							ds = append(ds, ingestEarn(p, id, ingestMember(i*each+j), 1299, fmt.Sprint(id, "-", size, "-", n, "-", j)))
						}
						var ack *lsync.Ack
						if ack, err = h.Push(ctx, id, ds); err == nil {
							err = allApplied(ack, len(ds))
						}
					}
					errs <- err
				}()
			}
			for range stores {
				if err := <-errs; err != nil {
					return err
				}
			}
			return nil
		})
	}
	from := 0
	measure("batches-of-500", func(int) error {
		from += stores * each
		return pushEarns(ctx, h, p, "s1", from, stores*each, 500, members)
	})
}

// allApplied fails unless ack applied each of n deltas.
func allApplied(ack *lsync.Ack, n int) error {
	if len(ack.Results) != n {
		return fmt.Errorf("%d results for %d deltas", len(ack.Results), n)
	}
	for _, r := range ack.Results {
		if r.Status != lsync.StatusApplied {
			return fmt.Errorf("not applied: %+v", r)
		}
	}
	return nil
}

// cpuTime returns the CPU time this process has used, user and system: on a machine shared with
// other work, a steadier measure of the work done than the time it took.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
