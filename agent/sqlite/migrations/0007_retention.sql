-- When this store last saw each member: a scan, or a delta of theirs (agent clock, ms). 0: not
-- since the copy arrived (or since this column was added); the next maintenance run stamps it.
-- Members not seen for replica.evict_after leave the replica (agent/maintain.go).
ALTER TABLE members ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX members_seen ON members (seen_at);

-- Members evicted from the replica that the hub has not yet confirmed taking out of this store's
-- scope (the sync protocol's unsubscribe), with when they were evicted (agent clock, ms).
CREATE TABLE unsubscribes (
	member TEXT PRIMARY KEY,
	at     INTEGER NOT NULL
) WITHOUT ROWID;

-- POS answers still kept, by age (pos.results_retention drops them, leaving the key and the
-- request hash), and every key by order (they go with the order's deltas, outbox.retain_acked).
CREATE INDEX pos_requests_answered ON pos_requests (at) WHERE response != '';
CREATE INDEX pos_requests_order ON pos_requests (order_id);

-- What the deltas deleted by pruning had spent of each lease the store still held: a lease's
-- spending is its lease_use rows plus this, so that orders can go while their lease lives on
-- (renewed and refilled at every pull while the store is connected).
CREATE TABLE lease_pruned (
	lease  TEXT PRIMARY KEY,
	amount INTEGER NOT NULL
) WITHOUT ROWID;
