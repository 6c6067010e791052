package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Webhooks (hub.WebhookTx): the tables of migration 0007, as hub/sqlite's.

const endpointCols = `id, url, events, description, sealed, created_at, disabled_at, disabled_reason, failures`

func scanEndpoint(row pgx.Row) (hub.WebhookEndpoint, error) {
	var e hub.WebhookEndpoint
	var events string
	var created, disabled, failures int64
	err := row.Scan(&e.ID, &e.URL, &events, &e.Description, &e.Sealed, &created, &disabled, &e.DisabledReason, &failures)
	e.Events, e.CreatedAt, e.DisabledAt, e.Failures = strings.Split(events, ","), unixms.Time(created), unixms.Time(disabled), int(failures)
	return e, err
}

func (t *tx) InsertWebhookEndpoint(ctx context.Context, e hub.WebhookEndpoint) error {
	tag, err := t.exec(ctx, `INSERT INTO webhook_endpoints (`+endpointCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING`, e.ID, e.URL, strings.Join(e.Events, ","), e.Description, e.Sealed, unixms.Of(e.CreatedAt),
		unixms.Of(e.DisabledAt), e.DisabledReason, int64(e.Failures))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.EDUPLICATE, "webhook %s exists already; add it again", e.ID)
	}
	return t.subscribe(ctx, e)
}

// subscribe writes an endpoint's subscriptions anew.
func (t *tx) subscribe(ctx context.Context, e hub.WebhookEndpoint) error {
	if _, err := t.exec(ctx, `DELETE FROM webhook_subscriptions WHERE endpoint = $1`, e.ID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO webhook_subscriptions (type, endpoint) SELECT DISTINCT unnest($1::text[]), $2
		ON CONFLICT DO NOTHING`, e.Events, e.ID)
	return err
}

func (t *tx) WebhookEndpoint(ctx context.Context, id string) (hub.WebhookEndpoint, error) {
	e, err := scanEndpoint(t.queryRow(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE id = $1`, id))
	return e, notFound(err, "no webhook %q; list them with GET /v1/webhooks or loyalty webhook list", id)
}

func (t *tx) WebhookEndpoints(ctx context.Context) ([]hub.WebhookEndpoint, error) {
	var out []hub.WebhookEndpoint
	err := t.each(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints ORDER BY created_at, id`, nil, func(rows pgx.Rows) error {
		e, err := scanEndpoint(rows)
		out = append(out, e)
		return err
	})
	return out, err
}

func (t *tx) UpdateWebhookEndpoint(ctx context.Context, e hub.WebhookEndpoint) error {
	tag, err := t.exec(ctx, `UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, sealed = $4, disabled_at = $5,
		disabled_reason = $6, failures = $7 WHERE id = $8`, e.URL, strings.Join(e.Events, ","), e.Description, e.Sealed,
		unixms.Of(e.DisabledAt), e.DisabledReason, int64(e.Failures), e.ID)
	if err != nil {
		return notFound(err, "no webhook %q", e.ID)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no webhook %q", e.ID)
	}
	return t.subscribe(ctx, e)
}

func (t *tx) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	tag, err := t.exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id) // cascades
	if err != nil {
		return notFound(err, "no webhook %q", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no webhook %q", id)
	}
	return nil
}

func (t *tx) WebhookTypes(ctx context.Context) ([]string, error) {
	var out []string
	err := t.each(ctx, `SELECT DISTINCT type FROM webhook_subscriptions`, nil, func(rows pgx.Rows) error {
		var typ string
		err := rows.Scan(&typ)
		out = append(out, typ)
		return err
	})
	return out, err
}

func (t *tx) InsertWebhookEvents(ctx context.Context, evs []hub.WebhookEvent) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	ids, types, bodies, skips := make([]string, len(evs)), make([]string, len(evs)), make([]string, len(evs)), make([]string, len(evs))
	ats := make([]int64, len(evs))
	for i, e := range evs {
		ids[i], types[i], ats[i], bodies[i], skips[i] = e.ID, e.Type, unixms.Of(e.CreatedAt), string(e.Body), e.Skip
	}
	// One statement: the events some endpoint takes, new ones only, and their deliveries.
	tag, err := t.exec(ctx, `WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
			AS x(id, type, created_at, body, skip)),
		ev AS (INSERT INTO webhook_events (id, type, created_at, body)
			SELECT x.id, x.type, x.created_at, x.body FROM x
			WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.type IN (x.type, '*') AND s.endpoint <> x.skip)
			ON CONFLICT (id) DO NOTHING RETURNING id, type, created_at)
		INSERT INTO webhook_deliveries (endpoint, event, state, created_at, next_at)
		SELECT DISTINCT s.endpoint, ev.id, 'pending', ev.created_at, ev.created_at
		FROM ev JOIN x ON x.id = ev.id JOIN webhook_subscriptions s ON s.type IN (ev.type, '*') AND s.endpoint <> x.skip
		ON CONFLICT DO NOTHING`, ids, types, ats, bodies, skips)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

const deliveryCols = `d.endpoint, d.event, COALESCE(v.type, ''), d.state, d.attempts, d.created_at, d.next_at, d.last_at, d.last_status,
	d.last_error, d.delivered_at`

func scanDelivery(row pgx.Row, extra ...any) (hub.WebhookDelivery, error) {
	var d hub.WebhookDelivery
	var attempts, status, created, next, last, delivered int64
	err := row.Scan(append([]any{&d.Endpoint, &d.Event, &d.Type, &d.State, &attempts, &created, &next, &last, &status,
		&d.LastError, &delivered}, extra...)...)
	d.Attempts, d.LastStatus = int(attempts), int(status)
	d.CreatedAt, d.LastAt, d.DeliveredAt = unixms.Time(created), unixms.Time(last), unixms.Time(delivered)
	if d.State == hub.DeliveryPending {
		d.NextAt = unixms.Time(next)
	}
	return d, err
}

func (t *tx) DueWebhookEndpoints(ctx context.Context, now time.Time) ([]string, error) {
	var out []string
	err := t.each(ctx, `SELECT e.id FROM webhook_endpoints e WHERE e.disabled_at = 0
		AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint = e.id AND d.state = 'pending' AND d.next_at <= $1) ORDER BY e.id`,
		[]any{unixms.Of(now)}, func(rows pgx.Rows) error {
			var id string
			err := rows.Scan(&id)
			out = append(out, id)
			return err
		})
	return out, err
}

func (t *tx) ClaimWebhookDeliveries(ctx context.Context, now time.Time, endpoint string, lease func(int) time.Duration, limit int) ([]hub.WebhookAttempt, error) {
	// The due deliveries first, locked (another process skips them), then the claim, whose
	// length depends on how many there are.
	// One endpoint's by its own index (webhook_deliveries_endpoint_due), whatever the plan.
	var endpoints, events []string
	q, args := `SELECT d.endpoint, d.event FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint
		WHERE d.state = 'pending' AND d.next_at <= $1 AND e.disabled_at = 0
		ORDER BY d.next_at, d.event LIMIT $2
		FOR UPDATE OF d SKIP LOCKED`, []any{unixms.Of(now), int64(limit)}
	if endpoint != "" {
		q, args = `SELECT d.endpoint, d.event FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint
		WHERE d.endpoint = $3 AND d.state = 'pending' AND d.next_at <= $1 AND e.disabled_at = 0
		ORDER BY d.next_at, d.event LIMIT $2
		FOR UPDATE OF d SKIP LOCKED`, append(args, endpoint)
	}
	err := t.each(ctx, q, args, func(rows pgx.Rows) error {
		var endpoint, event string
		err := rows.Scan(&endpoint, &event)
		endpoints, events = append(endpoints, endpoint), append(events, event)
		return err
	})
	if err != nil || len(events) == 0 {
		return nil, err
	}
	until := unixms.Of(now.Add(lease(len(events))))
	var out []hub.WebhookAttempt
	err = t.each(ctx, `WITH claimed AS (UPDATE webhook_deliveries d SET next_at = $3, claimed_until = $3
			FROM unnest($1::text[], $2::text[]) AS due(endpoint, event)
			WHERE d.endpoint = due.endpoint AND d.event = due.event RETURNING d.*)
		SELECT `+deliveryCols+`, e.url, e.sealed, v.body
		FROM claimed d JOIN webhook_endpoints e ON e.id = d.endpoint JOIN webhook_events v ON v.id = d.event
		ORDER BY d.event`, []any{endpoints, events, until}, func(rows pgx.Rows) error {
		var a hub.WebhookAttempt
		var body string
		var err error
		a.WebhookDelivery, err = scanDelivery(rows, &a.URL, &a.Sealed, &body)
		a.Body, a.ClaimedUntil = []byte(body), unixms.Time(until)
		out = append(out, a)
		return err
	})
	return out, err
}

func (t *tx) RecordWebhookOutcomes(ctx context.Context, outs []hub.WebhookOutcome) (int, error) {
	if len(outs) == 0 {
		return 0, nil
	}
	n := len(outs)
	endpoints, events, states, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, next, at, status, delivered, claimed := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, o := range outs {
		endpoints[i], events[i], states[i], errs[i] = o.Endpoint, o.Event, o.State, sanitize(o.Error)
		attempts[i], next[i], at[i], status[i], claimed[i] = int64(o.Attempts), unixms.Of(o.NextAt), unixms.Of(o.At), int64(o.Status), unixms.Of(o.ClaimedUntil)
		if o.State == hub.DeliveryDelivered {
			delivered[i] = at[i]
		}
	}
	tag, err := t.exec(ctx, `UPDATE webhook_deliveries d SET state = o.state, attempts = o.attempts, next_at = o.next_at, claimed_until = 0,
			last_at = o.at, last_status = o.status, last_error = o.error, delivered_at = o.delivered
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[])
			AS o(endpoint, event, state, attempts, next_at, at, status, error, delivered, claimed)
		WHERE d.endpoint = o.endpoint AND d.event = o.event AND d.state = 'pending' AND d.claimed_until = o.claimed`,
		endpoints, events, states, attempts, next, at, status, errs, delivered, claimed)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (t *tx) WebhookDeliveries(ctx context.Context, endpoint, state string, limit int) ([]hub.WebhookDelivery, error) {
	var out []hub.WebhookDelivery
	err := t.each(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries d LEFT JOIN webhook_events v ON v.id = d.event
		WHERE d.endpoint = $1`+hub.DeliveryStateCond(state)+` ORDER BY d.created_at DESC, d.event DESC LIMIT $2`,
		[]any{endpoint, int64(limit)}, func(rows pgx.Rows) error {
			d, err := scanDelivery(rows)
			out = append(out, d)
			return err
		})
	return out, err
}

// replayUpsert queues a delivery again as new; its SELECT names the endpoint $1 and the time $2.
const replayUpsert = `INSERT INTO webhook_deliveries (endpoint, event, state, attempts, created_at, next_at)
	SELECT $1, v.id, 'pending', 0, $2, $2 FROM webhook_events v
	WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE s.endpoint = $1 AND s.type IN (v.type, '*')) AND `

const replayConflict = ` ON CONFLICT (endpoint, event) DO UPDATE SET state = 'pending', attempts = 0, created_at = excluded.created_at,
	next_at = excluded.next_at, claimed_until = 0, last_status = 0, last_error = '', delivered_at = 0`

func (t *tx) ReplayWebhookEvent(ctx context.Context, endpoint, event string, now time.Time) (int, error) {
	tag, err := t.exec(ctx, replayUpsert+`v.id = $3`+replayConflict, endpoint, unixms.Of(now), event)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (t *tx) ReplayWebhookSince(ctx context.Context, endpoint string, from, until, now time.Time, limit int) (int, time.Time, error) {
	if from.After(until) {
		return 0, time.Time{}, nil
	}
	last, next := unixms.Of(until), time.Time{}
	var at int64
	err := t.queryRow(ctx, `SELECT created_at FROM webhook_events WHERE created_at >= $1 AND created_at <= $2
		ORDER BY created_at LIMIT 1 OFFSET $3`, unixms.Of(from), last, int64(limit-1)).Scan(&at)
	switch {
	case err == nil && at < last:
		last, next = at, unixms.Time(at+1)
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return 0, time.Time{}, err
	}
	tag, err := t.exec(ctx, replayUpsert+`v.created_at >= $3 AND v.created_at <= $4`+replayConflict,
		endpoint, unixms.Of(now), unixms.Of(from), last)
	if err != nil {
		return 0, time.Time{}, err
	}
	return int(tag.RowsAffected()), next, nil
}

func (t *tx) WebhookStoreTransitions(ctx context.Context, offlineBefore time.Time) ([]hub.StoreTransition, error) {
	var subscribed bool
	if err := t.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE type IN ('store.offline', 'store.online', '*'))`).
		Scan(&subscribed); err != nil || !subscribed {
		return nil, err
	}
	var out []hub.StoreTransition
	err := t.each(ctx, `WITH tr AS (
			SELECT s.store AS id, s.last_seen, true AS offline FROM store_health s LEFT JOIN webhook_store_state w ON w.store = s.store
			WHERE NOT s.connected AND s.last_seen > 0 AND s.last_seen < $1 AND NOT COALESCE(w.offline, false)
			UNION ALL
			SELECT s.store, s.last_seen, false FROM store_health s JOIN webhook_store_state w ON w.store = s.store WHERE w.offline AND s.connected),
		up AS (INSERT INTO webhook_store_state (store, offline, at) SELECT id, offline, last_seen FROM tr
			ON CONFLICT (store) DO UPDATE SET offline = excluded.offline, at = excluded.at)
		SELECT id, last_seen, offline FROM tr ORDER BY id`, []any{unixms.Of(offlineBefore)}, func(rows pgx.Rows) error {
		var st hub.StoreTransition
		var seen int64
		err := rows.Scan(&st.Store, &seen, &st.Offline)
		st.LastSeen = unixms.Time(seen)
		out = append(out, st)
		return err
	})
	return out, err
}

func (t *tx) PruneWebhookDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := t.exec(ctx, `DELETE FROM webhook_deliveries WHERE (endpoint, event) IN (SELECT endpoint, event FROM webhook_deliveries
		WHERE state <> 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2)`, unixms.Of(before), limit)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (t *tx) GiveUpDisabledDeliveries(ctx context.Context, before time.Time, reason string, limit int) (int, error) {
	tag, err := t.exec(ctx, `UPDATE webhook_deliveries SET state = 'failed', last_error = $1, claimed_until = 0
		WHERE (endpoint, event) IN (SELECT d.endpoint, d.event FROM webhook_endpoints e JOIN webhook_deliveries d ON d.endpoint = e.id
			WHERE e.disabled_at <> 0 AND e.disabled_at < $2 AND d.state = 'pending' AND d.created_at < $2 LIMIT $3)`, reason, unixms.Of(before), limit)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (t *tx) PruneWebhookEvents(ctx context.Context, typ string, after, before time.Time, limit int) (int, time.Time, error) {
	n, last := 0, unixms.Of(after)
	err := t.each(ctx, `DELETE FROM webhook_events WHERE id IN (SELECT v.id FROM webhook_events v
		WHERE v.type = $1 AND v.created_at >= $2 AND v.created_at < $3
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event = v.id)
		ORDER BY v.created_at LIMIT $4) RETURNING created_at`, []any{typ, unixms.Of(after), unixms.Of(before), limit}, func(rows pgx.Rows) error {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return err
		}
		n, last = n+1, max(last, at)
		return nil
	})
	if err != nil {
		return 0, after, err
	}
	return n, unixms.Time(last), nil
}

func (t *tx) WebhookEventBody(ctx context.Context, id string) ([]byte, error) {
	var body string
	err := t.queryRow(ctx, `SELECT body FROM webhook_events WHERE id = $1`, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, loyalty.Errorf(loyalty.ENOTFOUND, "no webhook event %s", id)
	}
	return []byte(body), err
}

func (t *tx) SetWebhookEventBody(ctx context.Context, id string, body []byte) error {
	if _, err := t.exec(ctx, `UPDATE webhook_events SET body = $1 WHERE id = $2`, string(body), id); err != nil {
		return err
	}
	// An attempt under way keeps no claim: its answer, which may quote the old body, is not
	// recorded, and the delivery goes again, with the new one.
	_, err := t.exec(ctx, `UPDATE webhook_deliveries SET last_error = CASE WHEN last_error <> '' THEN $1 ELSE '' END,
		claimed_until = CASE WHEN state = 'pending' THEN 0 ELSE claimed_until END WHERE event = $2`, hub.ErasedDeliveryError, id)
	return err
}
