-- Budgets: what each has spent, the quota leases granted to stores, and every lease change.
CREATE TABLE budget_usage (
	budget TEXT PRIMARY KEY,
	spent  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE leases (
	id         TEXT PRIMARY KEY,
	store      TEXT NOT NULL,
	budget     TEXT NOT NULL,
	granted    INTEGER NOT NULL,
	consumed   INTEGER NOT NULL DEFAULT 0,
	state      TEXT NOT NULL,          -- active, ended (expired or revoked), settled
	expires_at INTEGER NOT NULL,       -- hub clock: last renewal + ttl + drift margin
	created_at INTEGER NOT NULL
);
CREATE INDEX leases_store ON leases (store, state);
CREATE INDEX leases_budget ON leases (budget, state);

CREATE TABLE lease_events (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	lease  TEXT NOT NULL,
	store  TEXT NOT NULL,
	budget TEXT NOT NULL,
	kind   TEXT NOT NULL,              -- grant, refill, expire, revoke, settle
	amount INTEGER NOT NULL,
	at     INTEGER NOT NULL
);
CREATE INDEX lease_events_lease ON lease_events (lease);

-- Event time (device time corrected by the store's clock offset) for period limits.
ALTER TABLE deltas ADD COLUMN event_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deltas_member_redeem ON deltas (member, event_at) WHERE kind = 'redeem';
