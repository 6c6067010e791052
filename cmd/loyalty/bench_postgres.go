package main

// The bench on PostgreSQL (--backend postgres): a database of the bench's own on the server
// --database names, and the raw PostgreSQL baselines measured in it, beside the hub's figures.

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty"
)

// createBenchDatabase creates a new, empty database, loyalty_bench_<random>, on the PostgreSQL
// server that the URL server names (connecting to the database the URL names, to create it). It
// returns the new database's URL (server's, with the path changed) and a function that drops it,
// ending any connection left open on it.
func createBenchDatabase(ctx context.Context, server string) (string, func() error, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", nil, redactErr(fmt.Errorf("--database: %w", err), server)
	}
	name := "loyalty_bench_" + strings.ToLower(rand.Text()[:12])
	admin := func(ctx context.Context, q string) error {
		conn, err := connectPostgres(ctx, server)
		if err != nil {
			return redactErr(fmt.Errorf("connect to the PostgreSQL server %s: %w", databaseName(server), err), server)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, q); err != nil {
			return redactErr(fmt.Errorf("%s on %s: %w", q, databaseName(server), err), server)
		}
		return nil
	}
	if err := admin(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, err
	}
	drop := func() error {
		// Also after the run was interrupted: a context of its own.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return admin(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
	}
	u.Path, u.RawPath = "/"+name, ""
	return u.String(), drop, nil
}

// postgresDatabaseName returns the name of the database a PostgreSQL URL names.
func postgresDatabaseName(database string) string {
	u, err := url.Parse(database)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// barePostgresBaselines measures, in a scratch table of the bench's PostgreSQL database: o.Earns
// single-row INSERTs one after the other, each its own transaction and commit (their latency and
// their rate); and o.Deltas rows upserted r.BatchSize at a time, each batch one multi-row
// INSERT ... ON CONFLICT DO NOTHING, its own transaction. The rows are those of the SQLite
// baseline (an id and a short JSON body), so the two backends' baselines compare. A multi-row
// statement, one round trip per batch, is the fastest plain upsert there is (COPY cannot skip
// the rows already there): the raw rate the hub's ingest, which dedups in the same way, stands
// beside.
func barePostgresBaselines(ctx context.Context, database string, o benchOptions, r *BenchResult) error {
	conn, err := connectPostgres(ctx, database)
	if err != nil {
		return redactErr(fmt.Errorf("connect to %s: %w", databaseName(database), err), database)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE bench_bare (id text PRIMARY KEY, body text NOT NULL)`); err != nil {
		return err
	}
	lat := make([]time.Duration, 0, o.Earns)
	t0 := time.Now()
	for i := range o.Earns {
		t1 := time.Now()
		if _, err := conn.Exec(ctx, `INSERT INTO bench_bare (id, body) VALUES ($1, $2)`, fmt.Sprint("c", i), "x"); err != nil {
			return err
		}
		lat = append(lat, time.Since(t1))
	}
	r.PostgresCommitSerialPerSec = float64(o.Earns) / time.Since(t0).Seconds()
	r.PostgresCommitP50US, r.PostgresCommitP99US = percentile(lat, .5), percentile(lat, .99)

	t0 = time.Now()
	args := make([]any, 0, 2*r.BatchSize)
	for i := 0; i < o.Deltas; i += r.BatchSize {
		n := min(r.BatchSize, o.Deltas-i)
		args = args[:0]
		for j := i; j < i+n; j++ {
			args = append(args, fmt.Sprint("b", j), `{"kind":"earn","points":12}`)
		}
		if _, err := conn.Exec(ctx, multiRowUpsert(n), args...); err != nil {
			return err
		}
	}
	r.BareInsertPerSec = float64(o.Deltas) / time.Since(t0).Seconds()
	return nil
}

// multiRowUpsert is the statement that upserts n rows into bench_bare at once, skipping ids
// already there.
func multiRowUpsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO bench_bare (id, body) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d, $%d)", 2*i+1, 2*i+2)
	}
	b.WriteString(` ON CONFLICT (id) DO NOTHING`)
	return b.String()
}

// requalifyStatementPostgres is requalifyStatement for PostgreSQL: the same totals (sales in the
// tier window not reversed in full, less what partial refunds gave back) and the same tiers,
// written as PostgreSQL runs a set-based query well: the reversals aggregated once and joined,
// rather than looked up again for each sale by correlated subqueries, which PostgreSQL plans as a
// scan of the ledger per member. (members.id is COLLATE "C", deltas.member the database's
// collation: the join says which to compare in.)
func requalifyStatementPostgres(p *loyalty.Program, now time.Time) (string, []any) {
	if p.Tiers == nil || len(p.Tiers.Tiers) == 0 {
		return `UPDATE members SET tier = '' WHERE tier <> ''`, nil
	}
	col, back := "amount", "amount"
	if p.Tiers.Basis == loyalty.BasisPoints {
		col, back = "points", "-points"
	}
	from, to := p.Tiers.WindowBounds(now)
	since, until := int64(0), int64(math.MaxInt64) // unixms.Of and unixms.Until: a zero bound is none
	if !from.IsZero() {
		since = from.UnixMilli()
	}
	if !to.IsZero() {
		until = to.UnixMilli()
	}
	args := []any{since, until}
	var tier strings.Builder
	tier.WriteString("CASE")
	for i := len(p.Tiers.Tiers) - 1; i >= 0; i-- {
		t := p.Tiers.Tiers[i]
		fmt.Fprintf(&tier, " WHEN COALESCE(totals.total, 0) >= $%d THEN $%d::text", len(args)+1, len(args)+2)
		args = append(args, t.Threshold, t.ID)
	}
	tier.WriteString(" ELSE '' END")
	return `WITH rev AS (SELECT reverses AS id, bool_or(amount = 0) AS whole, COALESCE(sum(` + back + `) FILTER (WHERE amount > 0), 0) AS back
			FROM deltas WHERE reverses <> '' GROUP BY reverses),
		totals AS (SELECT d.member AS m, sum(d.` + col + ` - COALESCE(rev.back, 0)) AS total FROM deltas d LEFT JOIN rev ON rev.id = d.id
			WHERE d.kind = 'earn' AND d.rule = '' AND d.event_at >= $1 AND d.event_at < $2 AND rev.whole IS NOT TRUE GROUP BY d.member),
		t AS (SELECT m.id, ` + tier.String() + ` AS tier FROM members m LEFT JOIN totals ON totals.m COLLATE "C" = m.id)
		UPDATE members SET tier = t.tier FROM t WHERE t.id = members.id AND members.tier <> t.tier`, args
}
