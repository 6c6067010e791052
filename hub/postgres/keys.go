package postgres

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// The signing_keys table holds each key's public half and its private half as the hub gives it:
// sealed (hub.StoredKey).

const keyCols = `kid, public_key, private_key, not_after`

func scanKey(row pgx.Row, extra ...any) (hub.StoredKey, error) {
	var k hub.StoredKey
	var pub []byte
	var notAfter int64
	if err := row.Scan(append([]any{&k.ID, &pub, &k.Sealed, &notAfter}, extra...)...); err != nil {
		return k, err
	}
	k.Public, k.NotAfter = ed25519.PublicKey(pub), unixms.Time(notAfter)
	return k, nil
}

func (t *tx) InsertKey(ctx context.Context, k hub.StoredKey, changeVersion int64) error {
	_, err := t.exec(ctx, `INSERT INTO signing_keys (kid, public_key, private_key, not_after, created_seq, change_version)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		k.ID, []byte(k.Public), k.Sealed, unixms.Of(k.NotAfter), changeVersion, changeVersion)
	return err
}

func (t *tx) SigningKey(ctx context.Context) (hub.StoredKey, error) {
	k, err := scanKey(t.queryRow(ctx, `SELECT `+keyCols+` FROM signing_keys WHERE not_after = 0 ORDER BY created_seq DESC LIMIT 1`))
	if err != nil {
		return k, notFound(err, "no active signing key: rotate one in with `loyalty keys rotate`")
	}
	return k, nil
}

func (t *tx) Keys(ctx context.Context) ([]hub.StoredKey, error) {
	var out []hub.StoredKey
	err := t.each(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY created_seq`, nil, func(rows pgx.Rows) error {
		k, err := scanKey(rows)
		out = append(out, k)
		return err
	})
	return out, err
}

func (t *tx) ResealKey(ctx context.Context, id string, sealed []byte) error {
	tag, err := t.exec(ctx, `UPDATE signing_keys SET private_key = $1 WHERE kid = $2`, sealed, id)
	if err != nil {
		return notFound(err, "no signing key %q", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no signing key %q", id)
	}
	return nil
}

const publicKeysSQL = `SELECT ` + keyCols + `, change_version FROM signing_keys ORDER BY created_seq`

func scanVersionedKey(row pgx.Row) (hub.VersionedKey, error) {
	var v int64
	k, err := scanKey(row, &v)
	return hub.VersionedKey{PublicKey: qr.PublicKey{ID: k.ID, Key: k.Public, NotAfter: k.NotAfter}, Version: v}, err
}

func (t *tx) PublicKeys(ctx context.Context) ([]hub.VersionedKey, error) {
	var out []hub.VersionedKey
	err := t.each(ctx, publicKeysSQL, nil, func(rows pgx.Rows) error {
		k, err := scanVersionedKey(rows)
		out = append(out, k)
		return err
	})
	return out, err
}

func (t *tx) RetireKey(ctx context.Context, id string, notAfter time.Time, changeVersion int64) error {
	tag, err := t.exec(ctx, `UPDATE signing_keys SET not_after = $1, change_version = $2 WHERE kid = $3`, unixms.Of(notAfter), changeVersion, id)
	if err != nil {
		return notFound(err, "no signing key %q", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no signing key %q", id)
	}
	return nil
}
