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

-- Sales without a member (hub/sales.go): counted once by delta id, at most one per order at a
-- store, summed by event time for the reports' adoption rate and loyalty-influenced sales. No
-- personal data: the order id, the amount and the currency.
CREATE TABLE sales (
	id          text COLLATE "C" PRIMARY KEY,
	store       text NOT NULL,
	order_id    text NOT NULL,
	amount      bigint NOT NULL,
	currency    text NOT NULL,
	event_at    bigint NOT NULL,
	received_at bigint NOT NULL,
	hash        text NOT NULL,
	UNIQUE (store, order_id)
);
CREATE INDEX sales_event ON sales (event_at);
