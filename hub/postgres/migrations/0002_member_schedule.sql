-- When the background jobs must next look at a member (hub/jobs.go, hub.Schedule), as hub/sqlite's
-- migration 0018: review_at is the next tier review, expire_at the earliest time some points may
-- expire (NULL: never), last_active the event time of the last earn or redemption (0: none). The
-- hub keeps them as it applies deltas; tier requalification and points expiry visit only the
-- members they make due, through the indexes below (full ones: a partial index's condition is
-- not proved from a parameter).
--
-- An existing database gets last_active from its ledger, and every member is due for both jobs
-- (those with a positive balance for expiry): the first runs review everyone.
ALTER TABLE members ADD COLUMN review_at bigint;
ALTER TABLE members ADD COLUMN expire_at bigint;
ALTER TABLE members ADD COLUMN last_active bigint NOT NULL DEFAULT 0;
UPDATE members SET
	last_active = GREATEST(
		COALESCE((SELECT max(d.event_at) FROM deltas d WHERE d.member = members.id AND d.kind = 'earn'), 0),
		COALESCE((SELECT max(d.event_at) FROM deltas d WHERE d.member = members.id AND d.kind = 'redeem'), 0)),
	review_at = (extract(epoch FROM now()) * 1000)::bigint,
	expire_at = CASE WHEN balance > 0 THEN (extract(epoch FROM now()) * 1000)::bigint END;
CREATE INDEX members_review ON members (review_at, id);
CREATE INDEX members_expire ON members (expire_at, id);
-- The expiry job reads a member's lots: their earns through deltas_member_earn, and their
-- positive adjustments through this one rather than the member's whole ledger.
CREATE INDEX deltas_member_adjust ON deltas (member, event_at) WHERE kind = 'adjust';
