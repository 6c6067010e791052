-- The hub's schema on PostgreSQL: what hub/sqlite's migrations 0001 to 0017 build, in one step
-- (no PostgreSQL hub database existed before it). Later changes go in new files, 0002_*.sql on.
--
-- Conventions, as in the SQLite schema: times are bigint unix milliseconds, 0 for "none";
-- amounts, points and versions are bigint; '' is "none" for text. JSON documents (a delta's
-- body, a program, an idempotent response) are text: the hub never looks inside them in SQL,
-- text keeps them byte for byte, and jsonb would refuse the \u0000 escape a valid delta may hold.
-- Ids the hub pages through or sorts by are COLLATE "C": byte order, as SQLite compares text,
-- whatever the database's default collation.

-- Named counters: the change version (every change an agent must see is stamped with the next
-- one), the database's epoch and when it was restored, and charges_from (deltas with a seq up to
-- it were applied before charges were recorded: none, in a database that starts here).
CREATE TABLE counters (
	name  text PRIMARY KEY,
	value bigint NOT NULL
);
-- The epoch is a random number below 2^53 (exact in JSON numbers); 0 is never an epoch.
INSERT INTO counters (name, value) VALUES
	('version', 0),
	('charges_from', 0),
	('epoch', floor(random() * 9007199254740991)::bigint + 1);

CREATE TABLE stores (
	id              text COLLATE "C" PRIMARY KEY,
	name            text NOT NULL,
	token_hash      text NOT NULL,
	created_at      bigint NOT NULL,
	connected       boolean NOT NULL DEFAULT false,
	last_seen       bigint NOT NULL DEFAULT 0,
	clock_offset_ms bigint NOT NULL DEFAULT 0,
	outbox          bigint NOT NULL DEFAULT 0,
	tz              text NOT NULL DEFAULT '',     -- registered IANA time zone; '' is UTC
	flushed_at      bigint NOT NULL DEFAULT 0     -- last pull with the store's whole outbox pushed before it
);

CREATE TABLE members (
	id            text COLLATE "C" PRIMARY KEY,
	email         text UNIQUE,                    -- NULL when none was given
	name          text NOT NULL DEFAULT '',
	home_store    text NOT NULL DEFAULT '',
	tier          text NOT NULL DEFAULT '',
	country       text NOT NULL DEFAULT '',
	punches       text NOT NULL DEFAULT '',       -- punch card counts as a JSON object; '' for none
	balance       bigint NOT NULL DEFAULT 0,
	version       bigint NOT NULL,                -- change version of the member's last change
	created_at    bigint NOT NULL,
	referred_by   text NOT NULL DEFAULT '',
	referral_paid boolean NOT NULL DEFAULT false,
	birthday      text NOT NULL DEFAULT ''        -- "MM-DD" or "YYYY-MM-DD"; kept at the hub only
);
CREATE INDEX members_version ON members (version);
-- The daily birthday sweep looks members up by month and day (the last five characters).
CREATE INDEX members_birthday ON members (right(birthday, 5)) WHERE birthday <> '';

-- Replica scope: the members each store's agent keeps.
CREATE TABLE member_stores (
	store  text NOT NULL,
	member text NOT NULL REFERENCES members (id),
	PRIMARY KEY (store, member)
);

-- The ledger. seq is the hub's apply order; id is the delta's globally unique id; body is the
-- whole delta as JSON, for the fields without a column (lines, leases, clock offset, …).
CREATE TABLE deltas (
	seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id           text NOT NULL UNIQUE,
	hash         text NOT NULL,
	store        text NOT NULL,
	terminal     text NOT NULL DEFAULT '',
	member       text NOT NULL REFERENCES members (id),
	kind         text NOT NULL,
	points       bigint NOT NULL,
	amount       bigint NOT NULL DEFAULT 0,
	currency     text NOT NULL DEFAULT '',
	reward       text NOT NULL DEFAULT '',
	voucher      text NOT NULL DEFAULT '',
	order_id     text NOT NULL DEFAULT '',
	reverses     text NOT NULL DEFAULT '',
	rule         text NOT NULL DEFAULT '',        -- '' for purchases, or an action id
	rule_version bigint NOT NULL DEFAULT 0,
	occurred_at  bigint NOT NULL,
	received_at  bigint NOT NULL,
	event_at     bigint NOT NULL DEFAULT 0,       -- device time corrected by the store's clock offset
	body         text NOT NULL DEFAULT ''
);
CREATE INDEX deltas_member ON deltas (member, seq);
CREATE INDEX deltas_order ON deltas (store, order_id) WHERE order_id <> '';
-- Full indexes, not partial ones: "is d reversed?" (r.reverses = d.id) and a voucher's uses are
-- looked up with parameters, which cannot prove a partial index's condition.
CREATE INDEX deltas_reverses ON deltas (reverses);
CREATE INDEX deltas_voucher ON deltas (voucher);
CREATE INDEX deltas_member_redeem ON deltas (member, event_at) WHERE kind = 'redeem';
CREATE INDEX deltas_member_earn ON deltas (member, event_at) WHERE kind = 'earn';
CREATE INDEX deltas_member_tier ON deltas (member, event_at) WHERE kind = 'tier';

-- Deltas the hub refused, per store that pushed them (two stores may push the same delta id).
-- seq keeps the order of rejections made at the same time.
CREATE TABLE rejections (
	store    text NOT NULL,
	delta_id text NOT NULL,
	delta    text NOT NULL,                       -- the delta as JSON
	code     text NOT NULL,
	message  text NOT NULL,
	at       bigint NOT NULL,
	seq      bigint GENERATED ALWAYS AS IDENTITY,
	PRIMARY KEY (store, delta_id)
);
CREATE INDEX rejections_at ON rejections (at, seq);

CREATE TABLE conflicts (
	id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind    text NOT NULL,
	member  text NOT NULL,
	store   text NOT NULL,
	deltas  text[] NOT NULL,
	amount  bigint NOT NULL,
	detail  text NOT NULL,
	at      bigint NOT NULL,
	flagged boolean NOT NULL DEFAULT true
);
CREATE INDEX conflicts_member ON conflicts (member);

CREATE TABLE programs (
	version        bigint PRIMARY KEY,            -- the rule version
	body           text NOT NULL,                 -- the program as JSON
	change_version bigint NOT NULL,
	published_at   bigint NOT NULL DEFAULT 0
);

-- QR signing keys: the public half in clear, the private half sealed under the hub's
-- key-encryption key (hub.StoredKey).
CREATE TABLE signing_keys (
	kid            text PRIMARY KEY,
	public_key     bytea NOT NULL,
	private_key    bytea NOT NULL,
	not_after      bigint NOT NULL DEFAULT 0,     -- 0 while the key signs
	created_seq    bigint NOT NULL,
	change_version bigint NOT NULL
);

CREATE TABLE vouchers (
	id         text PRIMARY KEY,
	member     text NOT NULL REFERENCES members (id),
	reward     text NOT NULL,
	delta_id   text NOT NULL,                     -- the redeem delta that paid for it
	token      text NOT NULL,
	created_at bigint NOT NULL,
	expires_at bigint NOT NULL,
	voided_at  bigint NOT NULL DEFAULT 0          -- set when the order that bought it was refunded
);
CREATE INDEX vouchers_delta ON vouchers (delta_id);

-- Results of online-channel requests by idempotency key.
CREATE TABLE idempotency (
	scope    text NOT NULL,
	key      text NOT NULL,
	hash     text NOT NULL,
	response text NOT NULL,                       -- the answer as JSON
	at       bigint NOT NULL,
	PRIMARY KEY (scope, key)
);

-- Which rule versions the hub sent each store, and when the store's next pull showed it had them.
CREATE TABLE store_programs (
	store       text NOT NULL,
	version     bigint NOT NULL,
	sent_at     bigint NOT NULL,
	received_at bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (store, version)
);

-- Budgets: what each has spent, the quota leases granted to stores, and every lease change.
CREATE TABLE budget_usage (
	budget text PRIMARY KEY,
	spent  bigint NOT NULL DEFAULT 0
);

CREATE TABLE leases (
	id              text COLLATE "C" PRIMARY KEY,
	store           text COLLATE "C" NOT NULL,
	budget          text NOT NULL,
	granted         bigint NOT NULL,
	consumed        bigint NOT NULL DEFAULT 0,
	state           text NOT NULL,                -- active, ended (expired or revoked), settled
	expires_at      bigint NOT NULL,              -- hub clock: last renewal + ttl + drift margin
	created_at      bigint NOT NULL,
	-- What the hub is taking back: the store was told granted - reclaiming, and all of granted
	-- stays reserved until a later flushed pull of the session started at reclaim_session (unix
	-- nanoseconds) shows the store heard. wanted: what the store's last pull asked for beyond
	-- what the budget could grant.
	reclaiming      bigint NOT NULL DEFAULT 0,
	reclaim_session bigint NOT NULL DEFAULT 0,
	wanted          bigint NOT NULL DEFAULT 0
);
CREATE INDEX leases_store ON leases (store, state);
CREATE INDEX leases_budget ON leases (budget, state);

CREATE TABLE lease_events (
	seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	lease  text NOT NULL,
	store  text NOT NULL,
	budget text NOT NULL,
	kind   text NOT NULL,                         -- grant, refill, reclaim, expire, revoke, settle, writeoff, restore
	amount bigint NOT NULL,
	at     bigint NOT NULL
);
CREATE INDEX lease_events_lease ON lease_events (lease);

-- What each applied delta charged to each budget, and from which lease ('' for none).
CREATE TABLE budget_charges (
	delta  text NOT NULL,
	budget text COLLATE "C" NOT NULL,
	lease  text NOT NULL DEFAULT '',
	amount bigint NOT NULL,
	PRIMARY KEY (delta, budget)
);

-- What each store's leases of each budget were charged per hour (by the deltas' event time);
-- store '*' holds, per budget and hour, the largest single charge of any store. Hours older than
-- the demand window are pruned.
CREATE TABLE lease_demand (
	store   text NOT NULL,
	budget  text NOT NULL,
	hour    bigint NOT NULL,                      -- start of the hour, unix milliseconds
	amount  bigint NOT NULL DEFAULT 0,
	largest bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (store, budget, hour)
);
CREATE INDEX lease_demand_hour ON lease_demand (hour);

-- Since when the hub has recorded each store's demand of each budget.
CREATE TABLE lease_watch (
	store  text NOT NULL,
	budget text NOT NULL,
	since  bigint NOT NULL,
	PRIMARY KEY (store, budget)
);

-- API keys of the hub's HTTP API. Only the SHA-256 of a key is kept; revoked_at is 0 while valid.
CREATE TABLE api_keys (
	id         text COLLATE "C" PRIMARY KEY,
	name       text NOT NULL,
	scope      text NOT NULL,
	key_hash   text NOT NULL UNIQUE,
	created_at bigint NOT NULL,
	created_by text NOT NULL,
	revoked_at bigint NOT NULL DEFAULT 0
);

-- The audit trail of admin changes: who (the key), what, on what, when. Never a secret.
CREATE TABLE audit (
	seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at       bigint NOT NULL,
	key_id   text NOT NULL,
	key_name text NOT NULL,
	action   text NOT NULL,
	target   text NOT NULL,
	detail   text NOT NULL DEFAULT ''
);
