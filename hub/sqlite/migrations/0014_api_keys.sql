-- API keys of the hub's HTTP API, each with a scope (hub/apikeys.go). Only the SHA-256 of a key is
-- kept: the key itself is shown once, when it is created. revoked_at is 0 while the key is valid.
CREATE TABLE api_keys (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	scope      TEXT NOT NULL,
	key_hash   TEXT NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	created_by TEXT NOT NULL,
	revoked_at INTEGER NOT NULL DEFAULT 0
);
-- The audit trail of admin changes (hub/audit.go): who (the key), what, on what, when. Never a secret.
CREATE TABLE audit (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	at       INTEGER NOT NULL,
	key_id   TEXT NOT NULL,
	key_name TEXT NOT NULL,
	action   TEXT NOT NULL,
	target   TEXT NOT NULL,
	detail   TEXT NOT NULL DEFAULT ''
);
