package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// API keys and the audit trail (hub.AccessTx).

func (t *tx) InsertAPIKey(ctx context.Context, k hub.APIKey) error {
	tag, err := t.exec(ctx, `INSERT INTO api_keys (id, name, scope, key_hash, created_at, created_by, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		k.ID, k.Name, string(k.Scope), k.Hash, unixms.Of(k.CreatedAt), k.CreatedBy, unixms.Of(k.RevokedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.EDUPLICATE, "API key %s exists already; create the key again", k.ID)
	}
	return nil
}

const apiKeyCols = `id, name, scope, key_hash, created_at, created_by, revoked_at`

func scanAPIKey(row pgx.Row) (hub.APIKey, error) {
	var k hub.APIKey
	var scope string
	var created, revoked int64
	err := row.Scan(&k.ID, &k.Name, &scope, &k.Hash, &created, &k.CreatedBy, &revoked)
	k.Scope, k.CreatedAt, k.RevokedAt = hub.Scope(scope), unixms.Time(created), unixms.Time(revoked)
	return k, err
}

func (t *tx) APIKey(ctx context.Context, id string) (hub.APIKey, error) {
	k, err := scanAPIKey(t.queryRow(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = $1`, id))
	return k, notFound(err, "no API key %q; list them with GET /v1/api-keys or loyalty apikey list", id)
}

func (t *tx) APIKeyByHash(ctx context.Context, hash string) (hub.APIKey, error) {
	k, err := scanAPIKey(t.queryRow(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE key_hash = $1`, hash))
	return k, notFound(err, "no such API key")
}

func (t *tx) APIKeys(ctx context.Context) ([]hub.APIKey, error) {
	out := []hub.APIKey{}
	err := t.each(ctx, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY created_at, id`, nil, func(rows pgx.Rows) error {
		k, err := scanAPIKey(rows)
		out = append(out, k)
		return err
	})
	return out, err
}

func (t *tx) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	tag, err := t.exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE id = $2`, unixms.Of(at), id)
	if err != nil {
		return notFound(err, "no API key %q", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no API key %q", id)
	}
	return nil
}

func (t *tx) InsertAudit(ctx context.Context, e hub.AuditEntry) error {
	_, err := t.exec(ctx, `INSERT INTO audit (at, key_id, key_name, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		unixms.Of(e.At), e.KeyID, e.KeyName, e.Action, e.Target, e.Detail)
	return err
}

func (t *tx) Audit(ctx context.Context, q hub.AuditQuery) ([]hub.AuditEntry, error) {
	out := []hub.AuditEntry{}
	where, args := q.Where(func(n int) string { return fmt.Sprintf("$%d", n) }) // seq < $1 makes $1 a bigint
	err := t.each(ctx, `SELECT seq, at, key_id, key_name, action, target, detail FROM audit`+where+`
		ORDER BY seq DESC LIMIT `+fmt.Sprintf("$%d", len(args)+1), append(args, limit(q.Limit)),
		func(rows pgx.Rows) error {
			var e hub.AuditEntry
			var at int64
			err := rows.Scan(&e.Seq, &at, &e.KeyID, &e.KeyName, &e.Action, &e.Target, &e.Detail)
			e.At = unixms.Time(at)
			out = append(out, e)
			return err
		})
	return out, err
}

func (t *tx) EndSession(ctx context.Context, id string, until, now time.Time) error {
	if _, err := t.exec(ctx, `DELETE FROM ended_sessions WHERE until < $1`, unixms.Of(now)); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO ended_sessions (id, until) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, unixms.Of(until))
	return err
}

func (t *tx) SessionEnded(ctx context.Context, id string) (bool, error) {
	var ended bool
	err := t.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ended_sessions WHERE id = $1)`, id).Scan(&ended)
	return ended, err
}
