CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

-- Members as last synced from the hub. balance includes every delta the hub had applied as of version.
CREATE TABLE members (
	id      TEXT PRIMARY KEY,
	email   TEXT NOT NULL DEFAULT '',
	name    TEXT NOT NULL DEFAULT '',
	tier    TEXT NOT NULL DEFAULT '',
	balance INTEGER NOT NULL DEFAULT 0,
	version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE keys (
	kid        TEXT PRIMARY KEY,
	public_key BLOB NOT NULL,
	not_after  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- The local ledger and outbox: every delta minted at this store. state 'pending' is the outbox;
-- 'acked' deltas are in the hub's balance; 'rejected' ones were refused and are kept for review.
CREATE TABLE deltas (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	member     TEXT NOT NULL,
	kind       TEXT NOT NULL,
	points     INTEGER NOT NULL,
	order_id   TEXT NOT NULL DEFAULT '',
	reverses   TEXT NOT NULL DEFAULT '',
	voucher    TEXT NOT NULL DEFAULT '',
	body       TEXT NOT NULL,
	state      TEXT NOT NULL DEFAULT 'pending',
	hub_seq    INTEGER NOT NULL DEFAULT 0,
	code       TEXT NOT NULL DEFAULT '',
	message    TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);
CREATE INDEX deltas_pending ON deltas (seq) WHERE state = 'pending';
CREATE INDEX deltas_member_pending ON deltas (member) WHERE state = 'pending';
CREATE INDEX deltas_order ON deltas (order_id);
CREATE INDEX deltas_reverses ON deltas (reverses) WHERE reverses != '';
CREATE INDEX deltas_voucher ON deltas (voucher) WHERE voucher != '';

-- Answers to POS calls by idempotency key (operation, order id).
CREATE TABLE pos_requests (
	op       TEXT NOT NULL,
	order_id TEXT NOT NULL,
	hash     TEXT NOT NULL,
	response TEXT NOT NULL,
	at       INTEGER NOT NULL,
	PRIMARY KEY (op, order_id)
) WITHOUT ROWID;
