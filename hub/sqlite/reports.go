package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// The hub.ReportTx methods: set-based aggregates over a range of event time, read through the
// indexes of migration 0024 (deltas_event, members_created, conflicts_at).

// monthOf is the month index (Year*12 + Month-1, UTC) of a column of unix milliseconds.
func monthOf(col string) string {
	return fmt.Sprintf(`(CAST(strftime('%%Y', %[1]s / 1000, 'unixepoch') AS INTEGER) * 12 + CAST(strftime('%%m', %[1]s / 1000, 'unixepoch') AS INTEGER) - 1)`, col)
}

// reportDeltas selects the earns and redemptions of the range (?1, ?2) at store ?3 (” for all),
// each with its group key k (the store with ?4, else ”).
const reportDeltas = `SELECT CASE WHEN ?4 THEN d.store ELSE '' END AS k, d.id, d.member, d.kind, d.points, d.rule, d.amount, d.currency
	FROM deltas d WHERE d.kind IN ('earn', 'redeem') AND d.event_at >= ?1 AND d.event_at < ?2 AND (?3 = '' OR d.store = ?3)`

// reportPurchases selects the purchases among them: earns with no rule and an amount, each with
// its amount less what partial refunds gave back, and not reversed in full (by one reversal, or
// by partial refunds that add up to the whole amount).
const reportPurchases = `SELECT * FROM (SELECT a.k, a.member, a.currency,
		a.amount - COALESCE((SELECT SUM(r.amount) FROM deltas r WHERE r.reverses = a.id AND r.reverses != '' AND r.amount > 0), 0) AS net
	FROM a WHERE a.kind = 'earn' AND a.rule = '' AND a.amount > 0
		AND NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = a.id AND w.reverses != '' AND w.amount = 0)) p WHERE p.net > 0`

func (t *tx) ReportActivity(ctx context.Context, q hub.ReportQuery, byStore bool) ([]hub.Activity, error) {
	args := []any{unixms.Of(q.From), unixms.Of(q.To), q.Store, byStore}
	rows, err := t.QueryContext(ctx, `WITH a AS (`+reportDeltas+`), p AS (`+reportPurchases+`),
		pm AS (SELECT k, member, COUNT(*) AS n FROM p GROUP BY k, member)
		SELECT g.k, g.active, g.issued, g.redeemed, COALESCE(b.buyers, 0), COALESCE(b.repeaters, 0), COALESCE(b.purchases, 0)
		FROM (SELECT k, COUNT(DISTINCT CASE WHEN kind = 'redeem' OR rule = '' THEN member END) AS active, COALESCE(SUM(CASE WHEN kind = 'earn' THEN points END), 0) AS issued,
				-COALESCE(SUM(CASE WHEN kind = 'redeem' THEN points END), 0) AS redeemed FROM a GROUP BY k) g
		LEFT JOIN (SELECT k, COUNT(*) AS buyers, SUM(CASE WHEN n >= 2 THEN 1 ELSE 0 END) AS repeaters, SUM(n) AS purchases
			FROM pm GROUP BY k) b ON b.k = g.k
		ORDER BY g.k`, args...)
	if err != nil {
		return nil, err
	}
	var out []hub.Activity
	at := map[string]int{}
	err = scanAll(rows, func() error {
		var a hub.Activity
		err := rows.Scan(&a.Store, &a.Active, &a.PointsIssued, &a.PointsRedeemed, &a.Buyers, &a.RepeatBuyers, &a.Purchases)
		at[a.Store] = len(out)
		out = append(out, a)
		return err
	})
	if err != nil {
		return nil, err
	}
	rows, err = t.QueryContext(ctx, `WITH a AS (`+reportDeltas+`), p AS (`+reportPurchases+`)
		SELECT k, currency, COUNT(*), COALESCE(SUM(net), 0), COUNT(DISTINCT member) FROM p GROUP BY k, currency ORDER BY k, currency`, args...)
	if err != nil {
		return nil, err
	}
	err = scanAll(rows, func() error {
		var k string
		var s hub.CurrencySales
		if err := rows.Scan(&k, &s.Currency, &s.Purchases, &s.Amount, &s.Buyers); err != nil {
			return err
		}
		if i, ok := at[k]; ok {
			out[i].Sales = append(out[i].Sales, s)
		}
		return nil
	})
	return out, err
}

func (t *tx) ReportMembers(ctx context.Context, q hub.ReportQuery, byStore bool) ([]hub.MemberTotals, error) {
	rows, err := t.QueryContext(ctx, `SELECT CASE WHEN ?4 THEN home_store ELSE '' END AS k,
			COALESCE(SUM(CASE WHEN created_at < ?2 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN created_at >= ?1 AND created_at < ?2 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN balance > 0 THEN balance ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN balance < 0 THEN -balance ELSE 0 END), 0)
		FROM members WHERE (?3 = '' OR home_store = ?3) GROUP BY k ORDER BY k`,
		unixms.Of(q.From), unixms.Of(q.To), q.Store, byStore)
	if err != nil {
		return nil, err
	}
	var out []hub.MemberTotals
	err = scanAll(rows, func() error {
		var m hub.MemberTotals
		err := rows.Scan(&m.Store, &m.Total, &m.Enrolled, &m.Positive, &m.Overdrawn)
		out = append(out, m)
		return err
	})
	return out, err
}

func (t *tx) ReportConflicts(ctx context.Context, q hub.ReportQuery, byStore bool) ([]hub.ConflictCount, error) {
	rows, err := t.QueryContext(ctx, `SELECT CASE WHEN ?4 THEN store ELSE '' END AS k, kind, COUNT(*), COALESCE(SUM(amount), 0)
		FROM conflicts WHERE at >= ?1 AND at < ?2 AND (?3 = '' OR store = ?3) GROUP BY k, kind ORDER BY k, kind`,
		unixms.Of(q.From), unixms.Of(q.To), q.Store, byStore)
	if err != nil {
		return nil, err
	}
	var out []hub.ConflictCount
	err = scanAll(rows, func() error {
		var c hub.ConflictCount
		err := rows.Scan(&c.Store, &c.Kind, &c.Count, &c.Amount)
		out = append(out, c)
		return err
	})
	return out, err
}

func (t *tx) ReportMonths(ctx context.Context, q hub.ReportQuery) ([]hub.MonthActivity, error) {
	rows, err := t.QueryContext(ctx, `WITH am AS (SELECT DISTINCT d.member AS member, `+monthOf("d.event_at")+` AS mon
			FROM deltas d WHERE d.kind IN ('earn', 'redeem') AND (d.kind = 'redeem' OR d.rule = '') AND d.event_at >= ?1 AND d.event_at < ?2 AND (?3 = '' OR d.store = ?3))
		, x AS (SELECT mon, LEAD(mon) OVER (PARTITION BY member ORDER BY mon) AS nxt FROM am)
		SELECT mon, COUNT(*), COALESCE(SUM(CASE WHEN nxt = mon + 1 THEN 1 ELSE 0 END), 0) FROM x GROUP BY mon ORDER BY mon`, unixms.Of(q.From), unixms.Of(q.To), q.Store)
	if err != nil {
		return nil, err
	}
	var out []hub.MonthActivity
	err = scanAll(rows, func() error {
		var m hub.MonthActivity
		err := rows.Scan(&m.Month, &m.Active, &m.Retained)
		out = append(out, m)
		return err
	})
	return out, err
}

func (t *tx) ReportCohorts(ctx context.Context, q hub.ReportQuery) ([]hub.CohortMonth, error) {
	rows, err := t.QueryContext(ctx, `WITH c AS (SELECT id, `+monthOf("created_at")+` AS cohort FROM members
			WHERE created_at >= ?1 AND created_at < ?2 AND (?3 = '' OR home_store = ?3)),
		s AS (SELECT cohort, COUNT(*) AS size FROM c GROUP BY cohort),
		am AS (SELECT DISTINCT d.member AS member, `+monthOf("d.event_at")+` AS mon
			FROM deltas d WHERE d.kind IN ('earn', 'redeem') AND (d.kind = 'redeem' OR d.rule = '') AND d.event_at >= ?1 AND d.event_at < ?2),
		x AS (SELECT c.cohort AS cohort, am.mon AS mon, COUNT(*) AS n FROM c JOIN am ON am.member = c.id GROUP BY c.cohort, am.mon)
		SELECT s.cohort, s.size, COALESCE(x.mon, 0), COALESCE(x.n, 0) FROM s LEFT JOIN x ON x.cohort = s.cohort ORDER BY s.cohort, x.mon`,
		unixms.Of(q.From), unixms.Of(q.To), q.Store)
	if err != nil {
		return nil, err
	}
	var out []hub.CohortMonth
	err = scanAll(rows, func() error {
		var c hub.CohortMonth
		err := rows.Scan(&c.Cohort, &c.Size, &c.Month, &c.Active)
		out = append(out, c)
		return err
	})
	return out, err
}

// scanAll calls fn for each row and closes rows.
func scanAll(rows *sql.Rows, fn func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (t *tx) SetStoreUnsynced(ctx context.Context, store string, u hub.Unsynced) error {
	body, err := json.Marshal(u)
	if err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `INSERT INTO store_unsynced (store, body, at) VALUES (?1, ?2, ?3)
		ON CONFLICT (store) DO UPDATE SET body = excluded.body, at = excluded.at`, store, string(body), unixms.Of(u.ReportedAt))
	return err
}

func (t *tx) StoresUnsynced(ctx context.Context) (map[string]hub.Unsynced, error) {
	rows, err := t.QueryContext(ctx, `SELECT store, body FROM store_unsynced`)
	if err != nil {
		return nil, err
	}
	out := map[string]hub.Unsynced{}
	err = scanAll(rows, func() error {
		var store, body string
		var u hub.Unsynced
		if err := rows.Scan(&store, &body); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(body), &u); err != nil {
			return fmt.Errorf("store %s's unsynced report: %w", store, err)
		}
		out[store] = u
		return nil
	})
	return out, err
}

func (t *tx) InsertSale(ctx context.Context, s hub.Sale) (bool, error) {
	res, err := t.ExecContext(ctx, `INSERT INTO sales (id, store, order_id, amount, currency, event_at, received_at, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		s.ID, s.Store, s.OrderID, s.Amount, s.Currency, unixms.Of(s.EventAt), unixms.Of(s.ReceivedAt), s.Hash)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *tx) SaleHash(ctx context.Context, id string) (string, bool, error) {
	var h string
	err := t.QueryRowContext(ctx, `SELECT hash FROM sales WHERE id = ?`, id).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return h, err == nil, err
}

// ReportSales leaves out a sale whose order later earned points for a member at the store (a card
// scanned after the sale was reported): that order is a member's purchase.
func (t *tx) ReportSales(ctx context.Context, q hub.ReportQuery, byStore bool) ([]hub.SalesTotal, error) {
	rows, err := t.QueryContext(ctx, `SELECT CASE WHEN ?4 THEN store ELSE '' END AS k, currency, COUNT(*), COALESCE(SUM(amount), 0)
		FROM sales WHERE event_at >= ?1 AND event_at < ?2 AND (?3 = '' OR store = ?3)
			AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.store = sales.store AND d.order_id = sales.order_id AND d.order_id != '' AND d.kind = 'earn')
		GROUP BY k, currency ORDER BY k, currency`,
		unixms.Of(q.From), unixms.Of(q.To), q.Store, byStore)
	if err != nil {
		return nil, err
	}
	var out []hub.SalesTotal
	err = scanAll(rows, func() error {
		var s hub.SalesTotal
		err := rows.Scan(&s.Store, &s.Currency, &s.Count, &s.Amount)
		out = append(out, s)
		return err
	})
	return out, err
}
