package main

// The bench's raw SQLite baselines: what the same database engine does with the same pragmas
// when none of the hub's or agent's logic is in the way.

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// bareBaselines measures, in a database of its own in dir: o.Earns single-row commits one after
// the other (their latency and their rate), and, if upserts (the hub is on SQLite), o.Deltas rows
// inserted in batches of r.BatchSize with INSERT ... ON CONFLICT DO NOTHING, one transaction per
// batch, as the hub deduplicates.
func bareBaselines(ctx context.Context, dir string, o benchOptions, upserts bool, r *BenchResult) error {
	bare, err := sqlitedb.Open(ctx, filepath.Join(dir, "bare.db"), os.DirFS(dir)) // dir holds no migrations
	if err != nil {
		return err
	}
	defer bare.Close()
	if _, err := bare.W.ExecContext(ctx, `CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)`); err != nil {
		return err
	}
	lat := make([]time.Duration, 0, o.Earns)
	t0 := time.Now()
	for i := range o.Earns {
		t1 := time.Now()
		if _, err := bare.W.ExecContext(ctx, `INSERT INTO t (id, body) VALUES (?, ?)`, fmt.Sprint("c", i), "x"); err != nil {
			return err
		}
		lat = append(lat, time.Since(t1))
	}
	r.BareCommitSerialPerSec = float64(o.Earns) / time.Since(t0).Seconds()
	r.BareCommitP50US, r.BareCommitP99US = percentile(lat, .5), percentile(lat, .99)
	if !upserts {
		return nil
	}

	t0 = time.Now()
	for i := 0; i < o.Deltas; i += r.BatchSize {
		err := bare.Update(ctx, func(tx *sqlitedb.Tx) error {
			for j := i; j < min(i+r.BatchSize, o.Deltas); j++ {
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, body) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`,
					fmt.Sprint("b", j), `{"kind":"earn","points":12}`); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	r.BareInsertPerSec = float64(o.Deltas) / time.Since(t0).Seconds()
	return nil
}

// openHubSQL opens the hub's database directly, for what the hub's Store does not offer:
// counting the ledger and the members, and the set-based baseline. A SQLite file is opened with
// the hub's pragmas; a PostgreSQL URL (database) with pgx's database/sql driver. It is one
// connection, so a transaction on it is the only one it runs.
func openHubSQL(database string) (*sql.DB, error) {
	if isPostgresURL(database) {
		cfg, err := pgxpool.ParseConfig(database) // as hub/postgres reads it: pool settings are not sent to the server
		if err != nil {
			return nil, redactErr(err, database)
		}
		db := stdlib.OpenDB(*cfg.ConnConfig)
		db.SetMaxOpenConns(1)
		return db, nil
	}
	db, err := sql.Open("sqlite", sqlitedb.DSN(database, false, sqlitedb.Options{}))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// countRows returns the number of rows in one of the hub's tables.
func countRows(ctx context.Context, db *sql.DB, table string) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n)
	return n, err
}

// bareRequalify is the set-based baseline of Hub.Requalify: one UPDATE that computes every
// member's qualifying total for the tier window at now, with the very query the hub runs for one
// member (hub/sqlite's Qualifying: sales not refunded in full, less partial refunds, in the
// window), picks the tier the program gives that total (loyalty.TierRules.TierFor), and writes
// the members whose tier differs, as Requalify does. It is rolled back, so the hub's own tiers
// stand; committing would add one fsync. Without tiers in the program, Requalify computes no
// totals, and neither does this: it reads every member and writes none. On PostgreSQL
// (postgres) the statement is requalifyStatementPostgres.
func bareRequalify(ctx context.Context, db *sql.DB, postgres bool, p *loyalty.Program, now time.Time) (time.Duration, error) {
	q, args := requalifyStatement(p, now)
	if postgres {
		q, args = requalifyStatementPostgres(p, now)
	}
	t0 := time.Now()
	tx, err := db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE, the DSN's _txlock, as the hub's writes
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return 0, fmt.Errorf("set-based requalification: %w", err)
	}
	if err := tx.Rollback(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// requalifyStatement returns bareRequalify's UPDATE and its arguments.
func requalifyStatement(p *loyalty.Program, now time.Time) (string, []any) {
	if p.Tiers == nil || len(p.Tiers.Tiers) == 0 {
		return `UPDATE members SET tier = '' WHERE tier != ''`, nil
	}
	col, refunded := "amount", "r.amount"
	if p.Tiers.Basis == loyalty.BasisPoints {
		col, refunded = "points", "-r.points"
	}
	from, to := p.Tiers.WindowBounds(now)
	since, until := int64(0), int64(math.MaxInt64) // hub/sqlite's ms and until: a zero bound is none
	if !from.IsZero() {
		since = from.UnixMilli()
	}
	if !to.IsZero() {
		until = to.UnixMilli()
	}
	args := []any{since, until}
	// Each member's sales in the window (through member_lots, the hub's search of a member's earns
	// by time), those reversed in full left out, each less what partial refunds gave back.
	total := `(SELECT COALESCE(SUM(d.` + col + ` - (SELECT COALESCE(SUM(` + refunded + `), 0) FROM deltas r
				WHERE r.reverses = d.id AND r.reverses != '' AND r.amount > 0)), 0)
			FROM member_lots l CROSS JOIN deltas d ON d.seq = l.seq AND d.kind = 'earn'
			WHERE l.member = m.id AND d.rule = '' AND l.at >= ?1 AND l.at < ?2
				AND NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses != '' AND w.amount = 0))`
	// TierFor takes the last tier, in the program's order, whose threshold the total reaches.
	var tier strings.Builder
	tier.WriteString("CASE")
	for i := len(p.Tiers.Tiers) - 1; i >= 0; i-- {
		t := p.Tiers.Tiers[i]
		fmt.Fprintf(&tier, " WHEN total >= ?%d THEN ?%d", len(args)+1, len(args)+2)
		args = append(args, t.Threshold, t.ID)
	}
	tier.WriteString(" ELSE '' END")
	return `WITH t AS (SELECT id, ` + tier.String() + ` AS tier FROM (SELECT m.id AS id, ` + total + ` AS total FROM members m) AS q)
		UPDATE members SET tier = t.tier FROM t WHERE t.id = members.id AND members.tier != t.tier`, args
}
