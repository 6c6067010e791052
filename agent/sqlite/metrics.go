package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// Outbox implements agent.Tx: the count runs on the partial index of pending deltas, and the
// oldest is the first of them in that index's order.
func (t *tx) Outbox(ctx context.Context) (int64, time.Time, error) {
	var n int64
	var oldest sql.NullInt64
	err := t.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM deltas WHERE state = 'pending'),
		(SELECT created_at FROM deltas WHERE state = 'pending' ORDER BY seq LIMIT 1)`).Scan(&n, &oldest)
	if err != nil || !oldest.Valid {
		return n, time.Time{}, err
	}
	return n, time.UnixMilli(oldest.Int64), nil
}
