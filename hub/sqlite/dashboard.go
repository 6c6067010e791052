package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/loyalty-edge-sync/loyalty"
)

// Conflicts reviewed on the operator's dashboard (hub.ReviewTx).

func (t *tx) ResolveConflict(ctx context.Context, id int64) (bool, error) {
	var flagged bool
	err := t.QueryRowContext(ctx, `SELECT flagged FROM conflicts WHERE id = ?`, id).Scan(&flagged)
	if errors.Is(err, sql.ErrNoRows) {
		return false, loyalty.Errorf(loyalty.ENOTFOUND, "no conflict %d", id)
	}
	if err != nil || !flagged {
		return false, err
	}
	_, err = t.ExecContext(ctx, `UPDATE conflicts SET flagged = 0 WHERE id = ?`, id)
	return err == nil, err
}
