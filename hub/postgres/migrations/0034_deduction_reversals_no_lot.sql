-- The reversal of a negative adjustment (an adjust delta of positive points that names the one it
-- reverses) is no lot (loyalty.IsLot), as SQLite migration 0047 says: lots here are read from the
-- ledger, which now leaves it out. A member who had one, and has points, may have a next expiry
-- time set by it: they are due at once, and the next expiry run sets their exact time.
UPDATE members SET expire_at = (extract(epoch FROM now()) * 1000)::bigint
WHERE balance > 0 AND id IN (SELECT member FROM deltas WHERE kind = 'adjust' AND points > 0 AND reverses <> '');
