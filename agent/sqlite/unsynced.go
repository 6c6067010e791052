package sqlite

import (
	"context"

	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

var _ lsync.UnsyncedCounter = (*Store)(nil)

// Unsynced implements lsync.UnsyncedCounter: what the outbox holds, counted in one read through
// the outbox's index (deltas_pending) and the leases' use of those deltas.
func (s *Store) Unsynced(ctx context.Context) (lsync.Unsynced, error) {
	var u lsync.Unsynced
	err := s.db.View(ctx, func(t *sqlitedb.Tx) error {
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*),
				COALESCE(SUM(CASE WHEN kind = 'earn' THEN points END), 0),
				-COALESCE(SUM(CASE WHEN kind = 'redeem' THEN points END), 0),
				COALESCE(MIN(created_at), 0)
			FROM deltas WHERE state = 'pending'`).Scan(&u.Deltas, &u.PointsEarned, &u.PointsRedeemed, &u.OldestAt); err != nil {
			return err
		}
		if u.Deltas == 0 {
			return nil
		}
		rows, err := t.QueryContext(ctx, `SELECT l.budget, SUM(l.amount) FROM deltas d JOIN lease_use l ON l.delta_id = d.id
			WHERE d.state = 'pending' GROUP BY l.budget`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b string
			var n int64
			if err := rows.Scan(&b, &n); err != nil {
				return err
			}
			if u.Budgets == nil {
				u.Budgets = map[string]int64{}
			}
			u.Budgets[b] = n
		}
		return rows.Err()
	})
	return u, err
}
