-- The reversal of a negative adjustment (an adjust delta of positive points that names the one it
-- reverses) is no lot (loyalty.IsLot): it gives back points a deduction took, which are as old as
-- the lots they came from. Until this migration it made a lot of its own, dated at the reversal,
-- and its points did not expire until after_days after it. Its rows go; a member who had one, and
-- has points, is due for expiry at once, and the next expiry run sets their exact time.
DROP TRIGGER deltas_lot_credit;
CREATE TRIGGER deltas_lot_credit AFTER INSERT ON deltas
WHEN NEW.kind = 'earn' OR (NEW.kind = 'adjust' AND NEW.points > 0 AND NEW.reverses = '')
BEGIN
	INSERT INTO member_lots (member, at, seq, points)
	VALUES (NEW.member, NEW.event_at, NEW.seq,
		NEW.points + (SELECT COALESCE(SUM(r.points), 0) FROM deltas r WHERE r.reverses = NEW.id AND r.reverses != ''));
END;

UPDATE members SET expire_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE balance > 0 AND id IN (SELECT member FROM deltas WHERE kind = 'adjust' AND points > 0 AND reverses != '');

DELETE FROM member_lots WHERE (member, at, seq) IN
	(SELECT member, event_at, seq FROM deltas WHERE kind = 'adjust' AND points > 0 AND reverses != '');
