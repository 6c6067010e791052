-- When the background jobs must next look at a member (hub/jobs.go, hub.Schedule), so that tier
-- requalification and points expiry visit only the members that are due, through these indexes,
-- instead of every member: review_at is the next tier review, expire_at the earliest time some
-- points may expire (NULL: never), last_active the event time of the last earn or redemption
-- (the inactivity expiry's clock; 0: none). The hub keeps them as it applies deltas.
--
-- An existing database gets last_active from its ledger, and every member is due for both jobs
-- (those with a positive balance for expiry): the first runs review everyone and set the exact
-- times, in batches.
ALTER TABLE members ADD COLUMN review_at INTEGER;
ALTER TABLE members ADD COLUMN expire_at INTEGER;
ALTER TABLE members ADD COLUMN last_active INTEGER NOT NULL DEFAULT 0;
UPDATE members SET
	last_active = MAX(
		COALESCE((SELECT MAX(d.event_at) FROM deltas d WHERE d.member = members.id AND d.kind = 'earn'), 0),
		COALESCE((SELECT MAX(d.event_at) FROM deltas d WHERE d.member = members.id AND d.kind = 'redeem'), 0)),
	review_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000,
	expire_at = CASE WHEN balance > 0 THEN CAST(strftime('%s', 'now') AS INTEGER) * 1000 END;
CREATE INDEX members_review ON members (review_at) WHERE review_at IS NOT NULL;
CREATE INDEX members_expire ON members (expire_at) WHERE expire_at IS NOT NULL;
-- The expiry job reads a member's lots (Tx.Lots): their earns through deltas_member_earn, and
-- their positive adjustments through this one rather than the member's whole ledger.
CREATE INDEX deltas_member_adjust ON deltas (member, event_at) WHERE kind = 'adjust';
