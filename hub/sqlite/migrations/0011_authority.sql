-- The hub verifies what a store claims (docs/PROTOCOL.md, "What the hub verifies"):
-- a store's registered time zone, the newest change-feed cursor the hub has sent it (so it knows
-- which rule versions the store had), when each rule version was published, and a store's tier
-- history read by time.
ALTER TABLE stores ADD COLUMN tz TEXT NOT NULL DEFAULT '';
ALTER TABLE stores ADD COLUMN sent_cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stores ADD COLUMN program_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stores ADD COLUMN program_sent_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stores ADD COLUMN flushed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE programs ADD COLUMN published_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deltas_member_tier ON deltas (member, event_at) WHERE kind = 'tier';
