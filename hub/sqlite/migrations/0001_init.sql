CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('version', 0);

CREATE TABLE stores (
	id              TEXT PRIMARY KEY,
	name            TEXT NOT NULL,
	token_hash      TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	connected       INTEGER NOT NULL DEFAULT 0,
	last_seen       INTEGER NOT NULL DEFAULT 0,
	clock_offset_ms INTEGER NOT NULL DEFAULT 0,
	outbox          INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE members (
	id         TEXT PRIMARY KEY,
	email      TEXT UNIQUE,
	name       TEXT NOT NULL DEFAULT '',
	home_store TEXT NOT NULL DEFAULT '',
	tier       TEXT NOT NULL DEFAULT '',
	balance    INTEGER NOT NULL DEFAULT 0,
	version    INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX members_version ON members (version);

-- Replica scope: the members each store's agent keeps.
CREATE TABLE member_stores (
	store  TEXT NOT NULL,
	member TEXT NOT NULL REFERENCES members (id),
	PRIMARY KEY (store, member)
) WITHOUT ROWID;

-- The ledger. seq is the hub's apply order; id is the delta's globally unique id.
CREATE TABLE deltas (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	id           TEXT NOT NULL UNIQUE,
	hash         TEXT NOT NULL,
	store        TEXT NOT NULL,
	terminal     TEXT NOT NULL DEFAULT '',
	member       TEXT NOT NULL REFERENCES members (id),
	kind         TEXT NOT NULL,
	points       INTEGER NOT NULL,
	amount       INTEGER NOT NULL DEFAULT 0,
	currency     TEXT NOT NULL DEFAULT '',
	reward       TEXT NOT NULL DEFAULT '',
	voucher      TEXT NOT NULL DEFAULT '',
	order_id     TEXT NOT NULL DEFAULT '',
	reverses     TEXT NOT NULL DEFAULT '',
	rule_version INTEGER NOT NULL DEFAULT 0,
	occurred_at  INTEGER NOT NULL,
	received_at  INTEGER NOT NULL
);
CREATE INDEX deltas_member ON deltas (member, seq);
CREATE INDEX deltas_order ON deltas (store, order_id) WHERE order_id != '';
CREATE INDEX deltas_reverses ON deltas (reverses) WHERE reverses != '';
CREATE INDEX deltas_voucher ON deltas (voucher) WHERE voucher != '';

CREATE TABLE rejections (
	delta_id TEXT PRIMARY KEY,
	store    TEXT NOT NULL,
	delta    TEXT NOT NULL,
	code     TEXT NOT NULL,
	message  TEXT NOT NULL,
	at       INTEGER NOT NULL
);

CREATE TABLE conflicts (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	kind    TEXT NOT NULL,
	member  TEXT NOT NULL,
	store   TEXT NOT NULL,
	deltas  TEXT NOT NULL,
	amount  INTEGER NOT NULL,
	detail  TEXT NOT NULL,
	at      INTEGER NOT NULL,
	flagged INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX conflicts_member ON conflicts (member);

CREATE TABLE programs (
	version        INTEGER PRIMARY KEY,
	body           TEXT NOT NULL,
	change_version INTEGER NOT NULL
);

CREATE TABLE signing_keys (
	kid            TEXT PRIMARY KEY,
	private_key    BLOB NOT NULL,
	not_after      INTEGER NOT NULL DEFAULT 0,
	created_seq    INTEGER NOT NULL,
	change_version INTEGER NOT NULL
);

CREATE TABLE vouchers (
	id         TEXT PRIMARY KEY,
	member     TEXT NOT NULL REFERENCES members (id),
	reward     TEXT NOT NULL,
	delta_id   TEXT NOT NULL,
	token      TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);

-- Results of online-channel requests by idempotency key.
CREATE TABLE idempotency (
	scope    TEXT NOT NULL,
	key      TEXT NOT NULL,
	hash     TEXT NOT NULL,
	response TEXT NOT NULL,
	at       INTEGER NOT NULL,
	PRIMARY KEY (scope, key)
) WITHOUT ROWID;
