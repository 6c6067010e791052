-- Reports (hub/reports.go, docs/REPORTS.md), as hub/sqlite's migration 0024: the earns and
-- redemptions of a range of event time through deltas_event (one more index entry per earn and
-- redemption, none for the other kinds), the members who enrolled in it through members_created,
-- and the conflicts recorded in it through conflicts_at.
CREATE INDEX deltas_event ON deltas (event_at) WHERE kind IN ('earn', 'redeem');
CREATE INDEX members_created ON members (created_at);
CREATE INDEX conflicts_at ON conflicts (at);

-- What each store last reported of its outbox with its pings (hub.Unsynced, as JSON): the points
-- and budget it spent offline that the hub has not seen yet. The store's claim, bounded by the hub.
CREATE TABLE store_unsynced (
	store text COLLATE "C" PRIMARY KEY,
	body  text NOT NULL,
	at    bigint NOT NULL
);
