-- Budget leases as last received from the hub.
CREATE TABLE leases (
	id      TEXT PRIMARY KEY,
	budget  TEXT NOT NULL,
	granted INTEGER NOT NULL,
	state   TEXT NOT NULL,
	ttl_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- What each local delta spent from which lease. The store alone spends its leases, so the sum of
-- this table (for deltas the hub did not reject) is exactly what it has spent of each.
CREATE TABLE lease_use (
	delta_id TEXT NOT NULL,
	lease    TEXT NOT NULL,
	budget   TEXT NOT NULL,
	amount   INTEGER NOT NULL,
	PRIMARY KEY (delta_id, budget)
) WITHOUT ROWID;
CREATE INDEX lease_use_lease ON lease_use (lease);

-- Whether the store was offline when it approved the delta (offline redemption limits).
ALTER TABLE deltas ADD COLUMN offline INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deltas ADD COLUMN reward TEXT NOT NULL DEFAULT '';
CREATE INDEX deltas_member_redeem ON deltas (member, created_at) WHERE kind = 'redeem';
