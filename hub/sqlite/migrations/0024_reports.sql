-- Reports (hub/reports.go, docs/REPORTS.md) read a range of event time: the earns and redemptions
-- of the range through deltas_event (one more index entry per earn and redemption, none for the
-- other kinds), the members who enrolled in it through members_created, and the conflicts recorded
-- in it through conflicts_at.
CREATE INDEX deltas_event ON deltas (event_at) WHERE kind IN ('earn', 'redeem');
CREATE INDEX members_created ON members (created_at);
CREATE INDEX conflicts_at ON conflicts (at);

-- What each store last reported of its outbox with its pings (hub.Unsynced, as JSON): the points
-- and budget it spent offline that the hub has not seen yet. The store's claim, bounded by the hub.
CREATE TABLE store_unsynced (
	store TEXT PRIMARY KEY,
	body  TEXT NOT NULL,
	at    INTEGER NOT NULL
) WITHOUT ROWID;
