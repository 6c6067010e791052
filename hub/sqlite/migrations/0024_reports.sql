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

-- Sales without a member (hub/sales.go): counted once by delta id, at most one per order at a
-- store, summed by event time for the reports' adoption rate and loyalty-influenced sales. No
-- personal data: the order id, the amount and the currency.
CREATE TABLE sales (
	id          TEXT PRIMARY KEY,
	store       TEXT NOT NULL,
	order_id    TEXT NOT NULL,
	amount      INTEGER NOT NULL,
	currency    TEXT NOT NULL,
	event_at    INTEGER NOT NULL,
	received_at INTEGER NOT NULL,
	hash        TEXT NOT NULL,
	UNIQUE (store, order_id)
);
CREATE INDEX sales_event ON sales (event_at);
