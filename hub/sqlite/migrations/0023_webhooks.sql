-- Webhooks (hub/webhooks.go): the operator's endpoints, the event outbox and the delivery log.
-- Times are unix milliseconds of the hub's clock; 0 is none.
CREATE TABLE webhook_endpoints (
	id              TEXT PRIMARY KEY,
	url             TEXT NOT NULL,
	events          TEXT NOT NULL,               -- the event types it takes, comma-separated ("*": all)
	description     TEXT NOT NULL DEFAULT '',
	sealed          BLOB NOT NULL,               -- the signing secret, sealed under the hub's KEK
	created_at      INTEGER NOT NULL,
	disabled_at     INTEGER NOT NULL DEFAULT 0,
	disabled_reason TEXT NOT NULL DEFAULT '',
	failures        INTEGER NOT NULL DEFAULT 0   -- failed attempts since the last success
);
-- Which endpoints take which event type: what the outbox joins to fan an event out.
CREATE TABLE webhook_subscriptions (
	type     TEXT NOT NULL,
	endpoint TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	PRIMARY KEY (type, endpoint)
);
CREATE INDEX webhook_subscriptions_endpoint ON webhook_subscriptions (endpoint);
-- The outbox: each event once, its body exactly as signed and sent.
CREATE TABLE webhook_events (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	type       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	body       TEXT NOT NULL
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);
-- One event's delivery to one endpoint. A pending delivery is due at next_at; a claim moves
-- next_at and claimed_until to the claim's end, so that no other process takes it meanwhile.
CREATE TABLE webhook_deliveries (
	endpoint      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event         TEXT NOT NULL,
	state         TEXT NOT NULL,                 -- pending, delivered, failed
	attempts      INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,              -- queued, or queued again by a replay
	next_at       INTEGER NOT NULL,
	claimed_until INTEGER NOT NULL DEFAULT 0,
	last_at       INTEGER NOT NULL DEFAULT 0,
	last_status   INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT NOT NULL DEFAULT '',
	delivered_at  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (endpoint, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event);
-- Stores announced offline (store.offline) and not yet back online.
CREATE TABLE webhook_store_state (
	store   TEXT PRIMARY KEY,
	offline INTEGER NOT NULL,
	at      INTEGER NOT NULL
);
