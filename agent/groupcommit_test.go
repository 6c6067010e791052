package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	gosync "sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// addMembers puts members m2..m<n> into the replica (m1 is there already), with no points.
func addMembers(tb testing.TB, ta *replicaAgent, n int) {
	tb.Helper()
	var ms []loyalty.Member
	for i := 2; i <= n; i++ {
		ms = append(ms, loyalty.Member{ID: fmt.Sprint("m", i), Name: "Bob", Version: 1})
	}
	if err := ta.store.ApplyChanges(context.Background(), &lsync.Changes{Cursor: 11, Members: ms}); err != nil {
		tb.Fatal(err)
	}
}

// TestConcurrentEarns: many POS clients earn at once on a real replica, so their calls share
// commits (group commit), with retries and refused calls among them. Every receipt's delta is
// in the outbox exactly once, a retry gets the first answer, a refused call leaves nothing, and
// each member's receipts read as if the earns had run one after the other.
func TestConcurrentEarns(t *testing.T) {
	ta := newTestAgent(t)
	const members, clients, perClient = 4, 16, 8
	addMembers(t, ta, members)
	initial := map[string]int64{"m1": 120}
	ctx := context.Background()

	var mu gosync.Mutex
	receipts := map[string]loyalty.Receipt{} // by order id
	var wg gosync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for k := range perClient {
				member := fmt.Sprint("m", 1+(c+k)%members)
				req := loyalty.EarnRequest{OrderID: fmt.Sprintf("c%d-%d", c, k), QR: ta.token(t, member),
					Amount: loyalty.Money(100 * (1 + c + k)), Currency: "EUR"}
				r, err := ta.Earn(ctx, req)
				if err != nil {
					t.Errorf("earn %s: %v", req.OrderID, err)
					return
				}
				mu.Lock()
				receipts[req.OrderID] = r
				mu.Unlock()
				// A retry gets the first answer; the same order with another amount is refused
				// inside its transaction, and rolled back alone.
				again, err := ta.Earn(ctx, req)
				if err != nil || !slices.Equal(again.Deltas, r.Deltas) {
					t.Errorf("retry of %s: %v, %v; want deltas %v", req.OrderID, again.Deltas, err, r.Deltas)
				}
				req.Amount++
				if _, err := ta.Earn(ctx, req); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
					t.Errorf("%s with another amount: %v, want ECONFLICT", req.OrderID, err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	out, err := ta.store.Pending(ctx, 0, 10*clients*perClient)
	if err != nil {
		t.Fatal(err)
	}
	inOutbox := map[string]loyalty.Delta{}
	for _, o := range out {
		if _, dup := inOutbox[o.Delta.ID]; dup {
			t.Errorf("delta %s is in the outbox twice", o.Delta.ID)
		}
		inOutbox[o.Delta.ID] = o.Delta
	}
	if len(out) != clients*perClient {
		t.Errorf("%d deltas in the outbox, want %d: one per earn", len(out), clients*perClient)
	}
	byMember := map[string][]loyalty.Receipt{}
	for order, r := range receipts {
		if len(r.Deltas) != 1 {
			t.Fatalf("%s: receipt with deltas %v", order, r.Deltas)
		}
		d, ok := inOutbox[r.Deltas[0]]
		if !ok || d.OrderID != order || d.Member != r.Member || d.Points != r.Points || r.Points <= 0 {
			t.Errorf("%s: receipt %+v, outbox %+v (found %v)", order, r, d, ok)
		}
		byMember[r.Member] = append(byMember[r.Member], r)
	}
	for m, rs := range byMember {
		// Serial: ordered by the balance they report, each receipt adds its points to the one
		// before it.
		slices.SortFunc(rs, func(a, b loyalty.Receipt) int { return int(a.Balance - b.Balance) })
		bal := initial[m]
		for _, r := range rs {
			bal += r.Points
			if r.Balance != bal {
				t.Errorf("%s: receipt of %s says balance %d after %d points, want %d", m, r.OrderID, r.Balance, r.Points, bal)
				break
			}
		}
		if s := ta.scan(t, m); s.Balance != bal || s.Pending != bal-initial[m] {
			t.Errorf("%s: balance %d (pending %d), want %d (pending %d)", m, s.Balance, s.Pending, bal, bal-initial[m])
		}
	}
}

// BenchmarkConcurrentEarn measures earns per second through Agent.Earn (signed QR, offline, 1,000
// members) on a real replica file with 1 and 16 concurrent clients, and beside them, in the same
// run, the rate of serial bare commits: one single-row INSERT per transaction on a file with the
// same pragmas (WAL, synchronous FULL), measured just before and just after the earns. x-bare is
// the ratio; group commit is what lets it pass 1.
func BenchmarkConcurrentEarn(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprint("clients=", clients), func(b *testing.B) {
			ta := newTestAgent(b)
			const members = 1000
			addMembers(b, ta, members)
			tokens := make([]string, members)
			for i := range tokens {
				tokens[i] = ta.token(b, fmt.Sprint("m", i+1))
			}
			ctx := context.Background()
			bareBefore := bareCommits(b, 200)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg gosync.WaitGroup
			for range clients {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						_, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: fmt.Sprint("o", i), QR: tokens[i%members], Amount: 1299, Currency: "EUR"})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			earns := float64(b.N) / elapsed.Seconds()
			bareAfter := bareCommits(b, 200)
			bare := 400 / (bareBefore + bareAfter).Seconds()
			b.ReportMetric(earns, "earns/s")
			b.ReportMetric(bare, "bare-commits/s")
			b.ReportMetric(earns/bare, "x-bare")
		})
	}
}

// bareCommits commits n single-row INSERTs one after the other on a new file with the project's
// pragmas, and returns how long they took.
func bareCommits(b *testing.B, n int) time.Duration {
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(b.TempDir(), "bare.db"), fstest.MapFS{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		if _, err := db.W.ExecContext(ctx, `INSERT INTO t (id, body) VALUES (?, ?)`, fmt.Sprint("c", i), "x"); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}
