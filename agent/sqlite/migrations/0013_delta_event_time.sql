-- Each delta's event time, on the hub's clock (loyalty.Delta.EventTime: occurred_at plus the
-- clock offset the agent measured), which the hub reads a member's periods by: the agent counts
-- earn caps and member limits by it too, as the hub does, not by its own clock's created_at.
ALTER TABLE deltas ADD COLUMN event_at INTEGER NOT NULL DEFAULT 0;
UPDATE deltas SET event_at = CAST(ROUND((julianday(json_extract(body, '$.occurred_at')) - 2440587.5) * 86400000) AS INTEGER)
	+ COALESCE(json_extract(body, '$.clock_offset_ms'), 0);
CREATE INDEX IF NOT EXISTS deltas_member_event ON deltas (member, event_at);
