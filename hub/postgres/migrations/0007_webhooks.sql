-- Webhooks (hub/webhooks.go), as hub/sqlite's migration 0023: the operator's endpoints, the event outbox and the delivery log.
-- Times are unix milliseconds of the hub's clock; 0 is none.
CREATE TABLE webhook_endpoints (
	id              text COLLATE "C" PRIMARY KEY,
	url             text NOT NULL,
	events          text NOT NULL,               -- the event types it takes, comma-separated ("*": all)
	description     text NOT NULL DEFAULT '',
	sealed          bytea NOT NULL,               -- the signing secret, sealed under the hub's KEK
	created_at      bigint NOT NULL,
	disabled_at     bigint NOT NULL DEFAULT 0,
	disabled_reason text NOT NULL DEFAULT '',
	failures        bigint NOT NULL DEFAULT 0   -- failed attempts since the last success
);
-- Which endpoints take which event type: what the outbox joins to fan an event out.
CREATE TABLE webhook_subscriptions (
	type     text NOT NULL,
	endpoint text COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	PRIMARY KEY (type, endpoint)
);
CREATE INDEX webhook_subscriptions_endpoint ON webhook_subscriptions (endpoint);
-- The outbox: each event once, its body exactly as signed and sent.
CREATE TABLE webhook_events (
	seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id         text COLLATE "C" NOT NULL UNIQUE,
	type       text NOT NULL,
	created_at bigint NOT NULL,
	body       text NOT NULL
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);
-- One event's delivery to one endpoint. A pending delivery is due at next_at; a claim moves
-- next_at and claimed_until to the claim's end, so that no other process takes it meanwhile.
CREATE TABLE webhook_deliveries (
	endpoint      text COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event         text COLLATE "C" NOT NULL,
	state         text NOT NULL,                 -- pending, delivered, failed
	attempts      bigint NOT NULL DEFAULT 0,
	created_at    bigint NOT NULL,              -- queued, or queued again by a replay
	next_at       bigint NOT NULL,
	claimed_until bigint NOT NULL DEFAULT 0,
	last_at       bigint NOT NULL DEFAULT 0,
	last_status   bigint NOT NULL DEFAULT 0,
	last_error    text NOT NULL DEFAULT '',
	delivered_at  bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (endpoint, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event);
-- Stores announced offline (store.offline) and not yet back online.
CREATE TABLE webhook_store_state (
	store   text COLLATE "C" PRIMARY KEY,
	offline boolean NOT NULL,
	at      bigint NOT NULL
);
