-- When points of a member last expired (the event time of their last expiry that took points;
-- NULL: never). A change that reaches the hub dated at or before it, or that takes back a lot,
-- makes the hub replay the member's expiries and give back what they should not have taken
-- (hub/jobs.go, expireBack). An existing database takes it from its ledger, in one pass.
ALTER TABLE members ADD COLUMN expired_at INTEGER;
UPDATE members SET expired_at = x.at
FROM (SELECT member, MAX(event_at) AS at FROM deltas WHERE kind = 'expire' AND points < 0 GROUP BY member) AS x
WHERE members.id = x.member;
