-- Leases sized from observed demand, and quota taken back from idle leases (docs/BUDGETS.md).

-- What the hub is taking back from a lease: the store was told granted - reclaiming, and all of
-- granted stays reserved until the store has shown it heard (a later flushed pull of the session,
-- started at reclaim_session, unix nanoseconds, in which it was told). wanted: what the store's
-- last pull asked for beyond what the budget could grant.
ALTER TABLE leases ADD COLUMN reclaiming INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN reclaim_session INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN wanted INTEGER NOT NULL DEFAULT 0;

-- What each store's leases of each budget were charged per hour (by the deltas' event time), for
-- sizing its next leases; store '*' holds, per budget and hour, the largest single charge of any
-- store (one order's worth). Hours older than the demand window are pruned.
CREATE TABLE lease_demand (
	store   TEXT NOT NULL,
	budget  TEXT NOT NULL,
	hour    INTEGER NOT NULL,            -- start of the hour, unix milliseconds
	amount  INTEGER NOT NULL DEFAULT 0,  -- charged in that hour
	largest INTEGER NOT NULL DEFAULT 0,  -- the largest single charge in that hour
	PRIMARY KEY (store, budget, hour)
) WITHOUT ROWID;
CREATE INDEX lease_demand_hour ON lease_demand (hour);

-- Since when the hub has recorded each store's demand of each budget (unix milliseconds): until it
-- has a whole demand window of it, a store's lease is at least a new store's share. A hub upgraded
-- to this version starts watching every store at its first pull.
CREATE TABLE lease_watch (
	store  TEXT NOT NULL,
	budget TEXT NOT NULL,
	since  INTEGER NOT NULL,
	PRIMARY KEY (store, budget)
) WITHOUT ROWID;
