package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Member card links (hub.CardTx, migrations/0009_card_links.sql).

func (t *tx) CardEpoch(ctx context.Context, member string) (int64, error) {
	var epoch int64
	err := t.queryRow(ctx, `SELECT epoch FROM card_links WHERE member = $1`, member).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return epoch, err
}

func (t *tx) RevokeCardLinks(ctx context.Context, member string, at time.Time) (int64, error) {
	var epoch int64
	err := t.queryRow(ctx, `INSERT INTO card_links (member, epoch, revoked_at) VALUES ($1, 1, $2)
		ON CONFLICT (member) DO UPDATE SET epoch = card_links.epoch + 1, revoked_at = excluded.revoked_at
		RETURNING epoch`, member, unixms.Of(at)).Scan(&epoch)
	return epoch, err
}
