-- Members' lots, for points expiry per lot (Tx.Lots): every credit that makes a lot (every
-- earn, and every adjustment with positive points), with its event time (at), its ledger
-- position (seq) and what is left of it (points): its points less what reversals of it took back
-- (a full reversal the rest, a partial refund its share, an adjustment's reversal all of it;
-- their points are negative). Kept with the member's key, so that the expiry job reads a
-- member's lots with one search of one b-tree, where the ledger took a search of the earns'
-- index, each lot's row and a look for its reversals.
--
-- Until this migration a reversed adjustment still counted as a lot (on PostgreSQL too, which
-- reads lots from the ledger): a gift of points taken back kept as many of the member's points
-- from expiring. Now its reversal takes it back from the lot too.
--
-- The table also stands in for the index of members' earns by time (deltas_member_earn, dropped
-- below): the queries of a member's earns in a span of time search it and read each earn's row
-- by its position, as they read the index before. So a sale enters one b-tree keyed by member
-- and time, as before, not two.
--
-- The triggers below keep the rows in the transaction that inserts a delta, whoever inserts it.
-- A credit counts the reversals already in the ledger (a reversal may be written before what it
-- reverses), and a reversal takes from the lot of the credit it names. Hub.Check compares the
-- rows with the ledger (Tx.LotsDrift).
CREATE TABLE member_lots (
	member TEXT NOT NULL,
	at     INTEGER NOT NULL,
	seq    INTEGER NOT NULL,
	points INTEGER NOT NULL,
	PRIMARY KEY (member, at, seq)
) WITHOUT ROWID;

CREATE TRIGGER deltas_lot_credit AFTER INSERT ON deltas WHEN NEW.kind = 'earn' OR (NEW.kind = 'adjust' AND NEW.points > 0)
BEGIN
	INSERT INTO member_lots (member, at, seq, points)
	VALUES (NEW.member, NEW.event_at, NEW.seq,
		NEW.points + (SELECT COALESCE(SUM(r.points), 0) FROM deltas r WHERE r.reverses = NEW.id AND r.reverses != ''));
END;

CREATE TRIGGER deltas_lot_reversal AFTER INSERT ON deltas WHEN NEW.reverses != ''
BEGIN
	UPDATE member_lots SET points = points + NEW.points
	WHERE (member, at, seq) = (SELECT o.member, o.event_at, o.seq FROM deltas o WHERE o.id = NEW.reverses AND o.kind IN ('earn', 'adjust'));
END;

-- The earns' index gives way to the table above; the trigger of 0019 that recounts a sale's day
-- after a reversal read the day's sales through it, and now reads them through the table.
DROP INDEX deltas_member_earn;
DROP TRIGGER deltas_qualifying_reversal;
CREATE TRIGGER deltas_qualifying_reversal AFTER INSERT ON deltas WHEN NEW.kind = 'reverse'
BEGIN
	INSERT OR REPLACE INTO member_qualifying (member, day, amount, points, first)
	SELECT k.member, k.day,
		COALESCE(SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses != '' AND w.amount = 0)
			THEN d.amount - (SELECT COALESCE(SUM(r.amount), 0) FROM deltas r WHERE r.reverses = d.id AND r.reverses != '' AND r.amount > 0) END), 0),
		COALESCE(SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses != '' AND w.amount = 0)
			THEN d.points + (SELECT COALESCE(SUM(r.points), 0) FROM deltas r WHERE r.reverses = d.id AND r.reverses != '' AND r.amount > 0) END), 0),
		MIN(CASE WHEN NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses != '' AND w.amount = 0) THEN d.event_at END)
	FROM (SELECT o.member AS member, o.event_at - ((o.event_at % 86400000) + 86400000) % 86400000 AS day
		FROM deltas o WHERE o.id = NEW.reverses AND o.kind = 'earn' AND o.rule = '') AS k
	CROSS JOIN member_lots l ON l.member = k.member AND l.at >= k.day AND l.at < k.day + 86400000
	CROSS JOIN deltas d ON d.seq = l.seq AND d.kind = 'earn' AND d.rule = ''
	GROUP BY k.member, k.day;
END;

-- The ledger so far.
INSERT INTO member_lots (member, at, seq, points)
SELECT d.member, d.event_at, d.seq, d.points + COALESCE((SELECT SUM(r.points) FROM deltas r WHERE r.reverses = d.id AND r.reverses != ''), 0)
FROM deltas d WHERE d.kind = 'earn' OR (d.kind = 'adjust' AND d.points > 0);
