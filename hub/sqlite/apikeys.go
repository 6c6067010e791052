package sqlite

import (
	"context"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// API keys and the audit trail (migrations/0014_api_keys.sql).

func (t *tx) InsertAPIKey(ctx context.Context, k hub.APIKey) error {
	res, err := t.ExecContext(ctx, `INSERT INTO api_keys (id, name, scope, key_hash, created_at, created_by, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		k.ID, k.Name, string(k.Scope), k.Hash, unixms.Of(k.CreatedAt), k.CreatedBy, unixms.Of(k.RevokedAt))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.EDUPLICATE, "API key %s exists already; create the key again", k.ID)
	}
	return nil
}

const apiKeyCols = `id, name, scope, key_hash, created_at, created_by, revoked_at`

func scanAPIKey(row interface{ Scan(...any) error }) (hub.APIKey, error) {
	var k hub.APIKey
	var scope string
	var created, revoked int64
	err := row.Scan(&k.ID, &k.Name, &scope, &k.Hash, &created, &k.CreatedBy, &revoked)
	k.Scope, k.CreatedAt, k.RevokedAt = hub.Scope(scope), unixms.Time(created), unixms.Time(revoked)
	return k, err
}

func (t *tx) APIKey(ctx context.Context, id string) (hub.APIKey, error) {
	k, err := scanAPIKey(t.QueryRowContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`, id))
	return k, notFound(err, "no API key %q; list them with GET /v1/api-keys or loyalty apikey list", id)
}

func (t *tx) APIKeyByHash(ctx context.Context, hash string) (hub.APIKey, error) {
	k, err := scanAPIKey(t.QueryRowContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE key_hash = ?`, hash))
	return k, notFound(err, "no such API key")
}

func (t *tx) APIKeys(ctx context.Context) ([]hub.APIKey, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (t *tx) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	res, err := t.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ?`, unixms.Of(at), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no API key %q", id)
	}
	return nil
}

func (t *tx) InsertAudit(ctx context.Context, e hub.AuditEntry) error {
	_, err := t.ExecContext(ctx, `INSERT INTO audit (at, key_id, key_name, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		unixms.Of(e.At), e.KeyID, e.KeyName, e.Action, e.Target, e.Detail)
	return err
}

func (t *tx) Audit(ctx context.Context, q hub.AuditQuery) ([]hub.AuditEntry, error) {
	query, args := auditQuery(q)
	rows, err := t.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.AuditEntry{}
	for rows.Next() {
		var e hub.AuditEntry
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.KeyID, &e.KeyName, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, err
		}
		e.At = unixms.Time(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// auditQuery is the statement of an audit query (hub.AuditQuery.Where), with its arguments.
func auditQuery(q hub.AuditQuery) (string, []any) {
	where, args := q.Where(func(int) string { return "?" })
	return `SELECT seq, at, key_id, key_name, action, target, detail FROM audit` + where + ` ORDER BY seq DESC LIMIT ?+0`, append(args, q.Limit)
}

func (t *tx) EndSession(ctx context.Context, id string, until, now time.Time) error {
	if _, err := t.ExecContext(ctx, `DELETE FROM ended_sessions WHERE until < ?`, unixms.Of(now)); err != nil {
		return err
	}
	_, err := t.ExecContext(ctx, `INSERT INTO ended_sessions (id, until) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, id, unixms.Of(until))
	return err
}

func (t *tx) SessionEnded(ctx context.Context, id string) (bool, error) {
	var ended bool
	err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM ended_sessions WHERE id = ?)`, id).Scan(&ended)
	return ended, err
}
