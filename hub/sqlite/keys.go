package sqlite

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

func (t *tx) InsertKey(ctx context.Context, k qr.PrivateKey, changeVersion int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, not_after, created_seq, change_version) VALUES (?, ?, ?, ?, ?)`,
		k.ID, []byte(k.Key), ms(k.NotAfter), changeVersion, changeVersion)
	return err
}

func (t *tx) SigningKey(ctx context.Context) (qr.PrivateKey, error) {
	var k qr.PrivateKey
	var priv []byte
	var notAfter int64
	err := t.QueryRowContext(ctx, `SELECT kid, private_key, not_after FROM signing_keys WHERE not_after = 0 ORDER BY created_seq DESC LIMIT 1`).
		Scan(&k.ID, &priv, &notAfter)
	if err != nil {
		return k, notFound(err, "no active signing key: rotate one in with `loyalty keys rotate`")
	}
	k.Key, k.NotAfter = ed25519.PrivateKey(priv), fromMS(notAfter)
	return k, nil
}

func (t *tx) PublicKeys(ctx context.Context) ([]hub.VersionedKey, error) {
	rows, err := t.QueryContext(ctx, `SELECT kid, private_key, not_after, change_version FROM signing_keys ORDER BY created_seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.VersionedKey
	for rows.Next() {
		var k qr.PrivateKey
		var priv []byte
		var notAfter, v int64
		if err := rows.Scan(&k.ID, &priv, &notAfter, &v); err != nil {
			return nil, err
		}
		k.Key, k.NotAfter = ed25519.PrivateKey(priv), fromMS(notAfter)
		out = append(out, hub.VersionedKey{PublicKey: k.Public(), Version: v})
	}
	return out, rows.Err()
}

func (t *tx) RetireKey(ctx context.Context, id string, notAfter time.Time, changeVersion int64) error {
	res, err := t.ExecContext(ctx, `UPDATE signing_keys SET not_after = ?, change_version = ? WHERE kid = ?`, ms(notAfter), changeVersion, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no signing key %q", id)
	}
	return nil
}

