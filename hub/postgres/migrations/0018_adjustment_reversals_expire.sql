-- Lots (Tx.Lots) now count an adjustment's reversal, as they count an earn's: until this
-- migration a gift of points taken back still counted as a lot, and kept as many of the member's
-- points from expiring (SQLite migration 0032 says the same). A member whose next expiry time was
-- set that way may be due earlier: every member with points and such a gift is due at once, and
-- the next expiry run sets their exact time.
UPDATE members SET expire_at = (extract(epoch FROM now()) * 1000)::bigint
WHERE balance > 0 AND id IN (SELECT a.member FROM deltas a JOIN deltas r ON r.reverses = a.id AND r.reverses <> ''
	WHERE a.kind = 'adjust' AND a.points > 0);
