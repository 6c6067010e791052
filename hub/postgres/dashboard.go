package postgres

import (
	"context"

	"github.com/loyalty-edge-sync/loyalty"
)

// Conflicts reviewed on the operator's dashboard (hub.ReviewTx).

func (t *tx) ResolveConflict(ctx context.Context, id int64) (bool, error) {
	tag, err := t.exec(ctx, `UPDATE conflicts SET flagged = false WHERE id = $1 AND flagged`, id)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var n int
	if err := t.queryRow(ctx, `SELECT count(*) FROM conflicts WHERE id = $1`, id).Scan(&n); err != nil {
		return false, err
	}
	if n == 0 {
		return false, loyalty.Errorf(loyalty.ENOTFOUND, "no conflict %d", id)
	}
	return false, nil
}
