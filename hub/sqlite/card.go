package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Member card links (hub.CardTx, migrations/0025_card_links.sql).

func (t *tx) CardEpoch(ctx context.Context, member string) (int64, error) {
	var epoch int64
	err := t.QueryRowContext(ctx, `SELECT epoch FROM card_links WHERE member = ?`, member).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return epoch, err
}

func (t *tx) RevokeCardLinks(ctx context.Context, member string, at time.Time) (int64, error) {
	var epoch int64
	err := t.QueryRowContext(ctx, `INSERT INTO card_links (member, epoch, revoked_at) VALUES (?, 1, ?)
		ON CONFLICT (member) DO UPDATE SET epoch = epoch + 1, revoked_at = excluded.revoked_at
		RETURNING epoch`, member, unixms.Of(at)).Scan(&epoch)
	return epoch, err
}
