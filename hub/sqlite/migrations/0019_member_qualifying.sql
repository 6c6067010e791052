-- Running totals of what counts toward members' tiers (Tx.Qualifying), per member and UTC day, so
-- that a tier is computed from at most a year of days instead of the member's whole history.
-- A member's sales (earns with no rule) of one day, less those reversed in full (a reversal
-- without an amount) and less what partial refunds of them gave back: amount is the spend basis
-- (order amounts), points the points basis; first is the earliest event time among them (NULL:
-- none). day is the start of the UTC day of the sales' event time, in Unix milliseconds. A
-- refund counts on the day of the sale it refunds.
--
-- The triggers below keep the rows in the transaction that inserts a delta, whoever inserts it:
-- a sale adds to its day; a reversal of a sale recounts the sale's day from the ledger (exact,
-- and rare). Tx.Qualifying sums the whole days of a window from here and reads the ledger only for
-- the part of a day at a window's edge; Hub.Check compares the rows with the ledger.
CREATE TABLE member_qualifying (
	member TEXT NOT NULL,
	day    INTEGER NOT NULL,
	amount INTEGER NOT NULL DEFAULT 0,
	points INTEGER NOT NULL DEFAULT 0,
	first  INTEGER,
	PRIMARY KEY (member, day)
) WITHOUT ROWID;

-- A sale adds to its day.
CREATE TRIGGER deltas_qualifying_sale AFTER INSERT ON deltas WHEN NEW.kind = 'earn' AND NEW.rule = ''
BEGIN
	INSERT INTO member_qualifying (member, day, amount, points, first)
	VALUES (NEW.member, NEW.event_at - ((NEW.event_at % 86400000) + 86400000) % 86400000, NEW.amount, NEW.points, NEW.event_at)
	ON CONFLICT (member, day) DO UPDATE SET amount = amount + excluded.amount, points = points + excluded.points,
		first = CASE WHEN first IS NULL OR excluded.first < first THEN excluded.first ELSE first END;
END;

-- A reversal recounts the day of the sale it reverses, if it reverses a sale: the day's sales
-- (deltas_member_earn), each with a look at its reversals.
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
	JOIN deltas d ON d.member = k.member AND d.kind = 'earn' AND d.rule = '' AND d.event_at >= k.day AND d.event_at < k.day + 86400000
	GROUP BY k.member, k.day;
END;

-- The ledger so far.
INSERT INTO member_qualifying (member, day, amount, points, first)
SELECT e.member, e.event_at - ((e.event_at % 86400000) + 86400000) % 86400000 AS day,
	COALESCE(SUM(CASE WHEN e.whole = 0 THEN e.amount - e.ra END), 0), COALESCE(SUM(CASE WHEN e.whole = 0 THEN e.points - e.rp END), 0),
	MIN(CASE WHEN e.whole = 0 THEN e.event_at END)
FROM (SELECT d.member AS member, d.event_at AS event_at, d.amount AS amount, d.points AS points,
		COALESCE(MAX(r.amount = 0), 0) AS whole, COALESCE(SUM(CASE WHEN r.amount > 0 THEN r.amount END), 0) AS ra,
		COALESCE(SUM(CASE WHEN r.amount > 0 THEN -r.points END), 0) AS rp
	FROM deltas d LEFT JOIN deltas r ON r.reverses = d.id AND r.reverses != ''
	WHERE d.kind = 'earn' AND d.rule = ''
	GROUP BY d.seq) AS e
GROUP BY e.member, day;
