package hub_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

var (
	sweepMembers = flag.Int("sweep.members", 20000, "members BenchmarkSweep creates (1000000 for the figure at scale)")
	sweepNoSync  = flag.Bool("sweep.nosync", false, "BenchmarkSweep without fsync (synchronous OFF): the work without the commits' wait for the disk")
	sweepBatch   = flag.Int("sweep.batch", 0, "members per transaction in BenchmarkSweep (0: hub.DefaultJobBatch)")
)

// sweepNow is the hub's clock in BenchmarkSweep.
var sweepNow = time.Date(2027, 6, 15, 12, 0, 0, 0, time.UTC)

// exampleProgram is the default program with configs/program.yaml's tiers (spend over a rolling
// 12 months: member, silver from 300.00 EUR, gold from 1000.00 EUR) and the expiry its comment
// shows, in mode (lot: each earn's points 365 days after it; inactivity: the balance 365 days
// after the last earn or redemption), with 30 days of reminders.
func exampleProgram(mode string) func(*loyalty.Program) {
	return func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
			{ID: "member", Name: "Member", Threshold: 0, Multiplier: 1000},
			{ID: "silver", Name: "Silver", Threshold: 30000, Multiplier: 1500},
			{ID: "gold", Name: "Gold", Threshold: 100000, Multiplier: 2000}}}
		p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 365, RemindDays: 30}
	}
}

// openHubWith is openHub on a SQLite database opened with opts.
func openHubWith(tb testing.TB, opts sqlitedb.Options) *hub.Hub {
	tb.Helper()
	s, err := hubsqlite.OpenWith(context.Background(), filepath.Join(tb.TempDir(), "hub.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return hubOn(tb, s)
}

// sweepHub returns a hub with the example program and n members created in bulk, every one of
// them due for both jobs at sweepNow (as after a program change, or the migration that added the
// schedule). Each member has two sales. With change, one of a year and a day ago (300.00 EUR for
// even members, who are silver and fall to member; 10.00 EUR for odd ones, who stay member) and
// one of 30 days ago (10.00 EUR): in mode lot the old sale's points expire, in mode inactivity
// the member's last activity is the old sale and their whole balance expires. Without change,
// both sales are of 30 days ago and 10.00 EUR: nothing changes, each member's next times are
// computed and written. It also returns a second handle on the database, for the set-based
// baselines. Members are stored in an order unrelated to their ids (as with random ids).
func sweepHub(b *testing.B, n int, mode string, change bool) (*hub.Hub, sweepDB) {
	b.Helper()
	if n%7919 == 0 {
		b.Fatalf("-sweep.members must not be a multiple of 7919, which spreads the ids")
	}
	ctx := context.Background()
	var h *hub.Hub
	var db sweepDB
	if onPostgres() {
		h = openHub(b)
		raw := openRaw(b, whereOf(b, h.Store))
		db = sweepDB{raw: raw.DB, postgres: true}
	} else {
		h = openHubWith(b, sqlitedb.Options{NoSync: *sweepNoSync})
		sdb, err := sqlitedb.Open(ctx, h.Store.(*hubsqlite.Store).Path(), emptyFS{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { sdb.Close() })
		db = sweepDB{raw: sdb.W}
	}
	h.Now = func() time.Time { return sweepNow }
	withProgram(b, h, exampleProgram(mode))
	syncStores(b, h)
	old := sweepNow.AddDate(-1, 0, -1).UnixMilli()
	recent := sweepNow.AddDate(0, 0, -30).UnixMilli()
	last := recent
	silver := "CASE WHEN i % 2 = 0 THEN 'silver' ELSE 'member' END"
	oldAmount := "CASE WHEN i % 2 = 0 THEN 30000 ELSE 1000 END"
	switch {
	case !change:
		old, silver, oldAmount = recent-1000, "'member'", "1000"
	case mode == loyalty.ExpiryInactivity:
		last = old
		recent = old + 1000
	}
	// Every member due for both jobs, at the same time, as after a program change: rows for i
	// from 0 to n-1 (?1), in the backend's dialect.
	series := `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?1)`
	member := `printf('b%07d', i * 7919 % ?1)`
	deltaID := func(prefix string) string { return `printf('` + prefix + `%07d', i)` }
	if db.postgres {
		series = `WITH c(i) AS (SELECT generate_series(0, CAST(?1 AS bigint) - 1))`
		member = `'b' || lpad((i * 7919 % ?1)::text, 7, '0')`
		deltaID = func(prefix string) string { return `'` + prefix + `' || lpad(i::text, 7, '0')` }
	}
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO members (id, name, tier, balance, version, created_at, review_at, expire_at, last_active)
			SELECT ` + member + `, '', ` + silver + `, (` + oldAmount + `) / 100 + 10, CAST(?2 AS bigint) + i + 1,
				CAST(?3 AS bigint), CAST(?4 AS bigint), CAST(?4 AS bigint), CAST(?5 AS bigint) FROM c`,
			[]any{n, 0, old, sweepNow.Add(-time.Second).UnixMilli(), last}},
		{`INSERT INTO deltas (id, hash, store, member, kind, points, amount, currency, rule_version, occurred_at, received_at, event_at)
			SELECT ` + deltaID("old") + `, '', 's1', ` + member + `, 'earn', (` + oldAmount + `) / 100, ` + oldAmount + `, 'EUR', 2,
				CAST(?2 AS bigint), CAST(?2 AS bigint), CAST(?2 AS bigint) FROM c`, []any{n, old}},
		{`INSERT INTO deltas (id, hash, store, member, kind, points, amount, currency, rule_version, occurred_at, received_at, event_at)
			SELECT ` + deltaID("new") + `, '', 's1', ` + member + `, 'earn', 10, 1000, 'EUR', 2,
				CAST(?2 AS bigint), CAST(?2 AS bigint), CAST(?2 AS bigint) FROM c`, []any{n, recent}},
	}
	tx, err := db.raw.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	var v0 int64
	if err := tx.QueryRowContext(ctx, db.bind(`UPDATE counters SET value = value + ? WHERE name = 'version' RETURNING value - ?`), n, n).Scan(&v0); err != nil {
		b.Fatal(err)
	}
	stmts[0].args[1] = v0
	for _, st := range stmts {
		q := series + " " + st.q
		if db.postgres {
			q = strings.ReplaceAll(q, "?", "$")
		}
		if _, err := tx.ExecContext(ctx, q, st.args...); err != nil {
			b.Fatalf("%v: %s", err, q)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	db.vacuum(b)
	return h, db
}

// vacuum, on PostgreSQL, vacuums and analyzes the tables the sweeps read: after the bulk
// inserts (their pages' hint bits set, their statistics taken), and after the baselines, whose
// rolled-back updates leave a dead version of every member behind. Without it the timed sweep
// would pay for cleaning up after the setup and the baselines, which SQLite never leaves.
func (db sweepDB) vacuum(b *testing.B) {
	if !db.postgres {
		return
	}
	if _, err := db.raw.ExecContext(context.Background(), `VACUUM (ANALYZE) members, deltas, member_qualifying`); err != nil {
		b.Fatal(err)
	}
}

// sweepDB is a second handle on BenchmarkSweep's hub database, for the set-based baselines.
type sweepDB struct {
	raw      *sql.DB
	postgres bool
}

func (db sweepDB) bind(q string) string { return rawDB{postgres: db.postgres}.bind(q) }

// BenchmarkSweep measures the hub's background jobs over -sweep.members members (20000 by
// default; 1000000 for the figure at scale) when every member is due, in µs per member: tier
// requalification and points expiry, in expiry modes lot and inactivity; for members whose tier
// and points do not change (review: the sweep that follows a program change), and for members
// who all change (change: half fall from silver to member, every one loses points, each with a
// ledgered delta). Beside them, in the same run and on the same members: the set-based
// baselines, one UPDATE statement over the members table (requalification computing every
// member's window total in SQL; expiry zeroing every due balance), rolled back. Meanwhile a store
// pushes a sale every 10ms; the latency of those pushes (p99 and max) shows that the sweeps do
// not hold up sync. Run it with -benchtime 1x. It runs on PostgreSQL too (LOYALTY_TEST_POSTGRES),
// where the requalification baseline aggregates the reversals once and joins them.
func BenchmarkSweep(b *testing.B) {
	for _, mode := range []string{loyalty.ExpiryLot, loyalty.ExpiryInactivity} {
		for _, change := range []bool{false, true} {
			name := mode + "/review"
			if change {
				name = mode + "/change"
			}
			b.Run(name, func(b *testing.B) { benchSweep(b, mode, change) })
		}
	}
}

func benchSweep(b *testing.B, mode string, change bool) {
	n := *sweepMembers
	wantTiers, wantExpired := 0, 0
	if change {
		wantTiers, wantExpired = n/2+n%2, n
	}
	var requalify, expire, bareTiers, bareExpiry time.Duration
	var pushes []time.Duration
	for range b.N {
		b.StopTimer()
		h, db := sweepHub(b, n, mode, change)
		ctx := context.Background()
		bareTiers += bareRequalify(b, db, n)
		bareExpiry += bareUpdate(b, db, n)
		db.vacuum(b)
		b.StartTimer()

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			pushes = append(pushes, pushWhile(b, h, stop)...)
		}()
		// Expiry first: requalification computes members' expiry times too (exactly, in mode
		// inactivity), which would leave the expiry job nothing to do.
		t0 := time.Now()
		e, err := h.ExpirePointsWith(ctx, hub.JobOptions{Batch: *sweepBatch})
		expire += time.Since(t0)
		if err != nil || e.Visited < n || e.Changed != wantExpired {
			b.Fatalf("expire: %+v, %v; want %d visited, %d expired", e, err, n, wantExpired)
		}
		t0 = time.Now()
		r, err := h.RequalifyWith(ctx, hub.JobOptions{Batch: *sweepBatch})
		requalify += time.Since(t0)
		close(stop)
		wg.Wait()
		if err != nil || r.Visited < n || r.Changed != wantTiers {
			b.Fatalf("requalify: %+v, %v; want %d visited, %d changed", r, err, n, wantTiers)
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n*b.N) }
	b.ReportMetric(per(requalify), "requalify-µs/member")
	b.ReportMetric(per(expire), "expire-µs/member")
	b.ReportMetric(per(bareTiers), "bare-requalify-µs/member")
	b.ReportMetric(per(bareExpiry), "bare-update-µs/member")
	slices.Sort(pushes)
	if len(pushes) > 0 {
		b.ReportMetric(float64(pushes[len(pushes)/2].Microseconds())/1000, "push-p50-ms")
		b.ReportMetric(float64(pushes[len(pushes)*99/100].Microseconds())/1000, "push-p99-ms")
		b.ReportMetric(float64(pushes[len(pushes)-1].Microseconds())/1000, "push-max-ms")
		b.ReportMetric(float64(len(pushes))/float64(b.N), "pushes")
	}
}

// pushWhile pushes one sale of s1 every 10ms until stop, and returns how long each push took to
// be acknowledged.
func pushWhile(b *testing.B, h *hub.Hub, stop chan struct{}) []time.Duration {
	var out []time.Duration
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return out
		case <-t.C:
		}
		d := earn("s1", "m1", 1000)
		d.RuleVersion, d.OccurredAt = 2, sweepNow
		t0 := time.Now()
		ack, err := h.Push(context.Background(), "s1", []loyalty.Delta{d})
		if err != nil || len(ack.Results) != 1 || ack.Results[0].Status != "applied" {
			b.Errorf("push during the sweep: %+v, %v", ack, err)
			return out
		}
		out = append(out, time.Since(t0))
	}
}

// bareRequalify times one set-based UPDATE that computes every member's tier in SQL, with the
// hub's qualifying total (basis spend, rolling window), rolled back. On PostgreSQL the statement
// aggregates the reversals once and joins them, as PostgreSQL runs a set-based query well (its
// planner makes correlated subqueries a scan of the ledger per member).
func bareRequalify(b *testing.B, db sweepDB, n int) time.Duration {
	from := sweepNow.AddDate(-1, 0, 0).UnixMilli()
	to := sweepNow.UnixMilli() + 1
	if db.postgres {
		return bare(b, db, n, `WITH rev AS (SELECT reverses AS id, bool_or(amount = 0) AS whole, COALESCE(sum(amount) FILTER (WHERE amount > 0), 0) AS back
				FROM deltas WHERE reverses <> '' GROUP BY reverses),
			totals AS (SELECT d.member AS m, sum(d.amount - COALESCE(rev.back, 0)) AS total FROM deltas d LEFT JOIN rev ON rev.id = d.id
				WHERE d.kind = 'earn' AND d.rule = '' AND d.event_at >= $1 AND d.event_at < $2 AND rev.whole IS NOT TRUE GROUP BY d.member)
			UPDATE members AS m SET tier = CASE WHEN COALESCE(totals.total, 0) >= 100000 THEN 'gold' WHEN COALESCE(totals.total, 0) >= 30000 THEN 'silver' ELSE 'member' END
			FROM members AS mm LEFT JOIN totals ON totals.m COLLATE "C" = mm.id WHERE mm.id = m.id`, from, to)
	}
	return bare(b, db, n, `UPDATE members AS m SET tier = CASE WHEN total >= 100000 THEN 'gold' WHEN total >= 30000 THEN 'silver' ELSE 'member' END
		FROM (SELECT m.id AS id, (SELECT COALESCE(SUM(d.amount - (SELECT COALESCE(SUM(r.amount), 0) FROM deltas r
					WHERE r.reverses = d.id AND r.reverses != '' AND r.amount > 0)), 0)
				FROM member_lots l CROSS JOIN deltas d ON d.seq = l.seq AND d.kind = 'earn'
				WHERE l.member = m.id AND d.rule = '' AND l.at >= ?1 AND l.at < ?2
					AND NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses != '' AND w.amount = 0)) AS total
			FROM members m) AS q WHERE q.id = m.id`, from, to)
}

// bareUpdate times one UPDATE that zeroes every due balance with a new version, rolled back.
func bareUpdate(b *testing.B, db sweepDB, n int) time.Duration {
	return bare(b, db, n, db.bind(`UPDATE members SET balance = 0, version = version + 1, expire_at = NULL WHERE expire_at <= ?`), sweepNow.UnixMilli())
}

func bare(b *testing.B, db sweepDB, n int, q string, args ...any) time.Duration {
	ctx := context.Background()
	tx, err := db.raw.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	t0 := time.Now()
	res, err := tx.ExecContext(ctx, q, args...)
	d := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	if rows, _ := res.RowsAffected(); rows < int64(n) {
		b.Fatalf("the baseline changed %d rows, want %d: %s", rows, n, fmt.Sprint(q[:40]))
	}
	return d
}
