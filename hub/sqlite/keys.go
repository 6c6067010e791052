package sqlite

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// The signing_keys table holds each key's public half and its private half as the hub gives it:
// sealed (hub.StoredKey). Rows written by versions before sealing hold the clear private key
// until the hub reseals them at start.

const keyCols = `kid, public_key, private_key, not_after`

func scanKey(sc interface{ Scan(...any) error }, extra ...any) (hub.StoredKey, error) {
	var k hub.StoredKey
	var pub []byte
	var notAfter int64
	if err := sc.Scan(append([]any{&k.ID, &pub, &k.Sealed, &notAfter}, extra...)...); err != nil {
		return k, err
	}
	k.Public, k.NotAfter = ed25519.PublicKey(pub), unixms.Time(notAfter)
	return k, nil
}

func (t *tx) InsertKey(ctx context.Context, k hub.StoredKey, changeVersion int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO signing_keys (kid, public_key, private_key, not_after, created_seq, change_version) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, []byte(k.Public), k.Sealed, unixms.Of(k.NotAfter), changeVersion, changeVersion)
	return err
}

func (t *tx) SigningKey(ctx context.Context) (hub.StoredKey, error) {
	k, err := scanKey(t.QueryRowContext(ctx, `SELECT `+keyCols+` FROM signing_keys WHERE not_after = 0 ORDER BY created_seq DESC LIMIT 1`))
	if err != nil {
		return k, notFound(err, "no active signing key: rotate one in with `loyalty keys rotate`")
	}
	return k, nil
}

func (t *tx) Keys(ctx context.Context) ([]hub.StoredKey, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY created_seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.StoredKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (t *tx) ResealKey(ctx context.Context, id string, sealed []byte) error {
	res, err := t.ExecContext(ctx, `UPDATE signing_keys SET private_key = ? WHERE kid = ?`, sealed, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no signing key %q", id)
	}
	return nil
}

func (t *tx) PublicKeys(ctx context.Context) ([]hub.VersionedKey, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+keyCols+`, change_version FROM signing_keys ORDER BY created_seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.VersionedKey
	for rows.Next() {
		var v int64
		k, err := scanKey(rows, &v)
		if err != nil {
			return nil, err
		}
		out = append(out, hub.VersionedKey{PublicKey: qr.PublicKey{ID: k.ID, Key: k.Public, NotAfter: k.NotAfter}, Version: v})
	}
	return out, rows.Err()
}

func (t *tx) RetireKey(ctx context.Context, id string, notAfter time.Time, changeVersion int64) error {
	res, err := t.ExecContext(ctx, `UPDATE signing_keys SET not_after = ?, change_version = ? WHERE kid = ?`, unixms.Of(notAfter), changeVersion, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no signing key %q", id)
	}
	return nil
}
