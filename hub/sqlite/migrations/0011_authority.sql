-- The hub verifies what a store claims (docs/PROTOCOL.md, "What the hub verifies"):
-- a store's registered time zone, its last flushed pull, which rule versions the hub sent it and
-- when, when each rule version was published, and a member's tier history read by time.
ALTER TABLE stores ADD COLUMN tz TEXT NOT NULL DEFAULT '';
ALTER TABLE stores ADD COLUMN flushed_at INTEGER NOT NULL DEFAULT 0;
CREATE TABLE store_programs (
	store       TEXT NOT NULL,
	version     INTEGER NOT NULL,
	sent_at     INTEGER NOT NULL,
	received_at INTEGER NOT NULL DEFAULT 0, -- the store's next pull shows it had the answer
	PRIMARY KEY (store, version)
) WITHOUT ROWID;
ALTER TABLE programs ADD COLUMN published_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deltas_member_tier ON deltas (member, event_at) WHERE kind = 'tier';
-- Stores that synced before this version had every rule version they could have used: counted
-- as sent when this migration ran.
INSERT INTO store_programs (store, version, sent_at, received_at)
	SELECT s.id, p.version, CAST(strftime('%s', 'now') AS INTEGER) * 1000, CAST(strftime('%s', 'now') AS INTEGER) * 1000
	FROM stores s, programs p;
