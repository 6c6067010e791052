package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Webhooks (hub.WebhookTx): the tables of migration 0023.

const endpointCols = `id, url, events, description, sealed, created_at, disabled_at, disabled_reason, failures`

func scanEndpoint(row interface{ Scan(...any) error }) (hub.WebhookEndpoint, error) {
	var e hub.WebhookEndpoint
	var events string
	var created, disabled int64
	err := row.Scan(&e.ID, &e.URL, &events, &e.Description, &e.Sealed, &created, &disabled, &e.DisabledReason, &e.Failures)
	e.Events, e.CreatedAt, e.DisabledAt = strings.Split(events, ","), unixms.Time(created), unixms.Time(disabled)
	return e, err
}

func (t *tx) InsertWebhookEndpoint(ctx context.Context, e hub.WebhookEndpoint) error {
	res, err := t.ExecContext(ctx, `INSERT INTO webhook_endpoints (`+endpointCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, e.ID, e.URL, strings.Join(e.Events, ","), e.Description, e.Sealed, unixms.Of(e.CreatedAt),
		unixms.Of(e.DisabledAt), e.DisabledReason, e.Failures)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.EDUPLICATE, "webhook %s exists already; add it again", e.ID)
	}
	return t.subscribe(ctx, e)
}

// subscribe writes an endpoint's subscriptions anew.
func (t *tx) subscribe(ctx context.Context, e hub.WebhookEndpoint) error {
	if _, err := t.ExecContext(ctx, `DELETE FROM webhook_subscriptions WHERE endpoint = ?`, e.ID); err != nil {
		return err
	}
	list, _ := json.Marshal(e.Events)
	_, err := t.ExecContext(ctx, `INSERT INTO webhook_subscriptions (type, endpoint) SELECT value, ? FROM json_each(?) WHERE true
		ON CONFLICT DO NOTHING`, e.ID, string(list))
	return err
}

func (t *tx) WebhookEndpoint(ctx context.Context, id string) (hub.WebhookEndpoint, error) {
	e, err := scanEndpoint(t.QueryRowContext(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE id = ?`, id))
	return e, notFound(err, "no webhook %q; list them with GET /v1/webhooks or loyalty webhook list", id)
}

func (t *tx) WebhookEndpoints(ctx context.Context) ([]hub.WebhookEndpoint, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.WebhookEndpoint
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t *tx) UpdateWebhookEndpoint(ctx context.Context, e hub.WebhookEndpoint) error {
	res, err := t.ExecContext(ctx, `UPDATE webhook_endpoints SET url = ?, events = ?, description = ?, sealed = ?, disabled_at = ?,
		disabled_reason = ?, failures = ? WHERE id = ?`, e.URL, strings.Join(e.Events, ","), e.Description, e.Sealed,
		unixms.Of(e.DisabledAt), e.DisabledReason, e.Failures, e.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no webhook %q", e.ID)
	}
	return t.subscribe(ctx, e)
}

func (t *tx) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	res, err := t.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = ?`, id) // cascades
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no webhook %q", id)
	}
	return nil
}

func (t *tx) WebhookTypes(ctx context.Context) ([]string, error) {
	return t.Strings(ctx, `SELECT DISTINCT type FROM webhook_subscriptions`)
}

// webhookRow is an event as the outbox's statements read it from JSON.
type webhookRow struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	CreatedAt int64  `json:"at"`
	Body      string `json:"body"`
	Skip      string `json:"skip"`
}

func (t *tx) InsertWebhookEvents(ctx context.Context, evs []hub.WebhookEvent) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	rows := make([]webhookRow, len(evs))
	for i, e := range evs {
		rows[i] = webhookRow{e.ID, e.Type, unixms.Of(e.CreatedAt), string(e.Body), e.Skip}
	}
	list, err := json.Marshal(rows)
	if err != nil {
		return 0, err
	}
	// The events some endpoint takes, new ones only; then their deliveries, from the ids stored.
	res, err := t.QueryContext(ctx, `INSERT INTO webhook_events (id, type, created_at, body)
		SELECT j.value ->> 'id', j.value ->> 'type', j.value ->> 'at', j.value ->> 'body' FROM json_each(?) j
		WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.type IN (j.value ->> 'type', '*') AND s.endpoint <> j.value ->> 'skip')
		ON CONFLICT (id) DO NOTHING RETURNING id`, string(list))
	if err != nil {
		return 0, err
	}
	var stored []string
	for res.Next() {
		var id string
		if err := res.Scan(&id); err != nil {
			res.Close()
			return 0, err
		}
		stored = append(stored, id)
	}
	res.Close()
	if err := res.Err(); err != nil || len(stored) == 0 {
		return 0, err
	}
	skip := make(map[string]string, len(evs))
	for _, e := range evs {
		skip[e.ID] = e.Skip
	}
	keep := make([]webhookRow, len(stored))
	for i, id := range stored {
		keep[i] = webhookRow{ID: id, Skip: skip[id]}
	}
	kept, err := json.Marshal(keep)
	if err != nil {
		return 0, err
	}
	r, err := t.ExecContext(ctx, `INSERT INTO webhook_deliveries (endpoint, event, state, created_at, next_at)
		SELECT s.endpoint, v.id, 'pending', v.created_at, v.created_at
		FROM json_each(?) j JOIN webhook_events v ON v.id = j.value ->> 'id'
		JOIN webhook_subscriptions s ON s.type IN (v.type, '*') AND s.endpoint <> j.value ->> 'skip'
		WHERE true ON CONFLICT DO NOTHING`, string(kept))
	if err != nil {
		return 0, err
	}
	n, err := r.RowsAffected()
	return int(n), err
}

const deliveryCols = `d.endpoint, d.event, COALESCE(v.type, ''), d.state, d.attempts, d.created_at, d.next_at, d.last_at, d.last_status,
	d.last_error, d.delivered_at`

func scanDelivery(row interface{ Scan(...any) error }, extra ...any) (hub.WebhookDelivery, error) {
	var d hub.WebhookDelivery
	var created, next, last, delivered int64
	err := row.Scan(append([]any{&d.Endpoint, &d.Event, &d.Type, &d.State, &d.Attempts, &created, &next, &last, &d.LastStatus,
		&d.LastError, &delivered}, extra...)...)
	d.CreatedAt, d.LastAt, d.DeliveredAt = unixms.Time(created), unixms.Time(last), unixms.Time(delivered)
	if d.State == hub.DeliveryPending {
		d.NextAt = unixms.Time(next)
	}
	return d, err
}

func (t *tx) DueWebhookEndpoints(ctx context.Context, now time.Time) ([]string, error) {
	return t.Strings(ctx, `SELECT e.id FROM webhook_endpoints e WHERE e.disabled_at = 0
		AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint = e.id AND d.state = 'pending' AND d.next_at <= ?) ORDER BY e.id`,
		unixms.Of(now))
}

// The due deliveries of every enabled endpoint, and of one (by webhook_deliveries_endpoint_due).
const (
	claimFrom = `SELECT ` + deliveryCols + `, e.url, e.sealed, v.body
		FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint JOIN webhook_events v ON v.id = d.event WHERE `
	claimDue              = `d.state = 'pending' AND d.next_at <= ? AND e.disabled_at = 0 ORDER BY d.next_at, d.event LIMIT ?+0`
	claimDueQuery         = claimFrom + claimDue
	claimEndpointDueQuery = claimFrom + `d.endpoint = ? AND ` + claimDue
)

func (t *tx) ClaimWebhookDeliveries(ctx context.Context, now time.Time, endpoint string, lease func(int) time.Duration, limit int) ([]hub.WebhookAttempt, error) {
	q, args := claimDueQuery, []any{unixms.Of(now), limit}
	if endpoint != "" {
		q, args = claimEndpointDueQuery, []any{endpoint, unixms.Of(now), limit}
	}
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []hub.WebhookAttempt
	for rows.Next() {
		var a hub.WebhookAttempt
		var body string
		if a.WebhookDelivery, err = scanDelivery(rows, &a.URL, &a.Sealed, &body); err != nil {
			rows.Close()
			return nil, err
		}
		a.Body = []byte(body)
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	until := unixms.Of(now.Add(lease(len(out))))
	for i := range out {
		out[i].ClaimedUntil = unixms.Time(until)
	}
	for _, a := range out {
		if _, err := t.ExecContext(ctx, `UPDATE webhook_deliveries SET next_at = ?1, claimed_until = ?1 WHERE endpoint = ? AND event = ?`,
			until, a.Endpoint, a.Event); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *tx) RecordWebhookOutcomes(ctx context.Context, outs []hub.WebhookOutcome) (int, error) {
	n := 0
	for _, o := range outs {
		delivered := int64(0)
		if o.State == hub.DeliveryDelivered {
			delivered = unixms.Of(o.At)
		}
		res, err := t.ExecContext(ctx, `UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, claimed_until = 0, last_at = ?,
			last_status = ?, last_error = ?, delivered_at = ? WHERE endpoint = ? AND event = ? AND state = 'pending' AND claimed_until = ?`,
			o.State, o.Attempts, unixms.Of(o.NextAt), unixms.Of(o.At), o.Status, o.Error, delivered, o.Endpoint, o.Event, unixms.Of(o.ClaimedUntil))
		if err != nil {
			return n, err
		}
		k, _ := res.RowsAffected()
		n += int(k)
	}
	return n, nil
}

func (t *tx) WebhookDeliveries(ctx context.Context, endpoint, state string, limit int) ([]hub.WebhookDelivery, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries d LEFT JOIN webhook_events v ON v.id = d.event
		WHERE d.endpoint = ?1`+hub.DeliveryStateCond(state)+` ORDER BY d.created_at DESC, d.event DESC LIMIT ?2+0`, endpoint, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// replayUpsert queues a delivery again as new; its SELECT names the endpoint ?1 and the time ?2.
const replayUpsert = `INSERT INTO webhook_deliveries (endpoint, event, state, attempts, created_at, next_at)
	SELECT ?1, v.id, 'pending', 0, ?2, ?2 FROM webhook_events v
	WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.endpoint = ?1 AND s.type IN (v.type, '*')) AND `

const replayConflict = ` ON CONFLICT (endpoint, event) DO UPDATE SET state = 'pending', attempts = 0, created_at = excluded.created_at,
	next_at = excluded.next_at, claimed_until = 0, last_status = 0, last_error = '', delivered_at = 0`

func (t *tx) ReplayWebhookEvent(ctx context.Context, endpoint, event string, now time.Time) (int, error) {
	res, err := t.ExecContext(ctx, replayUpsert+`v.id = ?3`+replayConflict, endpoint, unixms.Of(now), event)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (t *tx) ReplayWebhookSince(ctx context.Context, endpoint string, from, until, now time.Time, limit int) (int, time.Time, error) {
	if from.After(until) {
		return 0, time.Time{}, nil
	}
	last, next := unixms.Of(until), time.Time{}
	var at int64
	err := t.QueryRowContext(ctx, `SELECT created_at FROM webhook_events WHERE created_at >= ? AND created_at <= ?
		ORDER BY created_at LIMIT 1 OFFSET ?`, unixms.Of(from), last, limit-1).Scan(&at)
	switch {
	case err == nil && at < last:
		last, next = at, unixms.Time(at+1)
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return 0, time.Time{}, err
	}
	res, err := t.ExecContext(ctx, replayUpsert+`v.created_at >= ?3 AND v.created_at <= ?4`+replayConflict,
		endpoint, unixms.Of(now), unixms.Of(from), last)
	if err != nil {
		return 0, time.Time{}, err
	}
	n, err := res.RowsAffected()
	return int(n), next, err
}

func (t *tx) WebhookStoreTransitions(ctx context.Context, offlineBefore time.Time) ([]hub.StoreTransition, error) {
	var subscribed bool
	if err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE type IN ('store.offline', 'store.online', '*'))`).
		Scan(&subscribed); err != nil || !subscribed {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT s.id, s.last_seen, 1 FROM stores s LEFT JOIN webhook_store_state w ON w.store = s.id
		WHERE s.connected = 0 AND s.last_seen > 0 AND s.last_seen < ? AND COALESCE(w.offline, 0) = 0
		UNION ALL
		SELECT s.id, s.last_seen, 0 FROM stores s JOIN webhook_store_state w ON w.store = s.id WHERE w.offline = 1 AND s.connected = 1
		ORDER BY 1`, unixms.Of(offlineBefore))
	if err != nil {
		return nil, err
	}
	var out []hub.StoreTransition
	for rows.Next() {
		var st hub.StoreTransition
		var seen int64
		if err := rows.Scan(&st.Store, &seen, &st.Offline); err != nil {
			rows.Close()
			return nil, err
		}
		st.LastSeen = unixms.Time(seen)
		out = append(out, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, st := range out {
		if _, err := t.ExecContext(ctx, `INSERT INTO webhook_store_state (store, offline, at) VALUES (?, ?, ?)
			ON CONFLICT (store) DO UPDATE SET offline = excluded.offline, at = excluded.at`, st.Store, st.Offline, unixms.Of(st.LastSeen)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *tx) PruneWebhookDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM webhook_deliveries
		WHERE state <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?+0)`, unixms.Of(before), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// disabledPending are the deliveries d pending for the endpoints disabled before ?2 that were
// queued before ?2: the endpoints first (CROSS JOIN), then each one's pending deliveries by the
// index of those alone, which a delivery given up leaves, so that a batch does not read again
// what the batches before it gave up (nor every pending delivery of every endpoint).
const disabledPending = `webhook_endpoints e CROSS JOIN webhook_deliveries d INDEXED BY webhook_deliveries_endpoint_due ON d.endpoint = e.id
	WHERE e.disabled_at <> 0 AND e.disabled_at < ?2 AND d.state = 'pending' AND d.created_at < ?2`

func (t *tx) GiveUpDisabledDeliveries(ctx context.Context, before time.Time, reason string, limit int) (int, error) {
	res, err := t.ExecContext(ctx, `UPDATE webhook_deliveries SET state = 'failed', last_error = ?, claimed_until = 0
		WHERE rowid IN (SELECT d.rowid FROM `+disabledPending+` LIMIT ?+0)`, reason, unixms.Of(before), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (t *tx) PruneWebhookEvents(ctx context.Context, typ string, after, before time.Time, limit int) (int, time.Time, error) {
	rows, err := t.QueryContext(ctx, `DELETE FROM webhook_events WHERE id IN (SELECT v.id FROM webhook_events v
		WHERE v.type = ? AND v.created_at >= ? AND v.created_at < ?
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event = v.id)
		ORDER BY v.created_at LIMIT ?+0) RETURNING created_at`, typ, unixms.Of(after), unixms.Of(before), limit)
	if err != nil {
		return 0, after, err
	}
	defer rows.Close()
	n, last := 0, unixms.Of(after)
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return 0, after, err
		}
		n, last = n+1, max(last, at)
	}
	return n, unixms.Time(last), rows.Err()
}

func (t *tx) WebhookEventBody(ctx context.Context, id string) ([]byte, error) {
	var body string
	err := t.QueryRowContext(ctx, `SELECT body FROM webhook_events WHERE id = ?`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, loyalty.Errorf(loyalty.ENOTFOUND, "no webhook event %s", id)
	}
	return []byte(body), err
}

func (t *tx) SetWebhookEventBody(ctx context.Context, id string, body []byte) error {
	// The old body is overwritten in the file (OpenWith: secure_delete).
	if _, err := t.ExecContext(ctx, `UPDATE webhook_events SET body = ? WHERE id = ?`, string(body), id); err != nil {
		return err
	}
	// An attempt under way keeps no claim: its answer, which may quote the old body, is not
	// recorded, and the delivery goes again, with the new one.
	_, err := t.ExecContext(ctx, `UPDATE webhook_deliveries SET last_error = CASE WHEN last_error <> '' THEN ? ELSE '' END,
		claimed_until = CASE WHEN state = 'pending' THEN 0 ELSE claimed_until END WHERE event = ?`, hub.ErasedDeliveryError, id)
	return err
}
