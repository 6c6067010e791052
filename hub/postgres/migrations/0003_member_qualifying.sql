-- Running totals of what counts toward members' tiers (Tx.Qualifying), per member and UTC day, as
-- hub/sqlite's migration 0019: a member's sales (earns with no rule) of one day, less those
-- reversed in full (a reversal without an amount) and less what partial refunds of them gave
-- back, in order amounts (the spend basis) and in points (the points basis), and the earliest
-- event time among them (NULL: none). day is the start of the UTC day, in Unix milliseconds; a
-- refund counts on the day of the sale it refunds.
--
-- The trigger keeps the rows in the transaction that inserts deltas, whoever inserts them, once
-- per statement (an INSERT of many deltas adds to each member's day once): sales add to their
-- days; reversals of sales recount those sales' days from the ledger (exact, and rare).
CREATE TABLE member_qualifying (
	member text NOT NULL,
	day    bigint NOT NULL,
	amount bigint NOT NULL DEFAULT 0,
	points bigint NOT NULL DEFAULT 0,
	first  bigint,
	PRIMARY KEY (member, day)
);

CREATE FUNCTION member_qualifying_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	rev record;
BEGIN
	INSERT INTO member_qualifying AS q (member, day, amount, points, first)
	SELECT a.member, a.event_at - mod(mod(a.event_at, 86400000) + 86400000, 86400000), sum(a.amount)::bigint, sum(a.points)::bigint, min(a.event_at)
	FROM added a WHERE a.kind = 'earn' AND a.rule = '' GROUP BY 1, 2
	ON CONFLICT (member, day) DO UPDATE SET amount = q.amount + excluded.amount, points = q.points + excluded.points,
		first = LEAST(q.first, excluded.first);
	-- Each reversal recounts the day of the sale it reverses, if it reverses one: that day's sales,
	-- each with a look at its reversals. One reversal at a time, so that the sale is found by its
	-- id and the day's sales by deltas_member_earn whatever the planner believes of the tables'
	-- sizes (a join of the inserted rows with the ledger, planned from a new table's statistics,
	-- scanned the inserted rows once per sale).
	FOR rev IN SELECT DISTINCT a.reverses FROM added a WHERE a.kind = 'reverse' LOOP
		INSERT INTO member_qualifying AS q (member, day, amount, points, first)
		SELECT k.member, k.day,
			COALESCE(sum(d.amount - (SELECT COALESCE(sum(r.amount), 0) FROM deltas r WHERE r.reverses = d.id AND r.reverses <> '' AND r.amount > 0))
				FILTER (WHERE NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses <> '' AND w.amount = 0)), 0)::bigint,
			COALESCE(sum(d.points + (SELECT COALESCE(sum(r.points), 0) FROM deltas r WHERE r.reverses = d.id AND r.reverses <> '' AND r.amount > 0))
				FILTER (WHERE NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses <> '' AND w.amount = 0)), 0)::bigint,
			min(d.event_at) FILTER (WHERE NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = d.id AND w.reverses <> '' AND w.amount = 0))
		FROM (SELECT o.member, o.event_at - mod(mod(o.event_at, 86400000) + 86400000, 86400000) AS day
			FROM deltas o WHERE o.id = rev.reverses AND o.kind = 'earn' AND o.rule = '') AS k
		JOIN deltas d ON d.member = k.member AND d.kind = 'earn' AND d.rule = '' AND d.event_at >= k.day AND d.event_at < k.day + 86400000
		GROUP BY k.member, k.day
		ON CONFLICT (member, day) DO UPDATE SET amount = excluded.amount, points = excluded.points, first = excluded.first;
	END LOOP;
	RETURN NULL;
END
$$;

CREATE TRIGGER deltas_qualifying AFTER INSERT ON deltas REFERENCING NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION member_qualifying_add();

-- The ledger so far.
INSERT INTO member_qualifying (member, day, amount, points, first)
SELECT e.member, e.event_at - mod(mod(e.event_at, 86400000) + 86400000, 86400000) AS day,
	COALESCE(sum(e.amount - e.ra) FILTER (WHERE NOT e.whole), 0)::bigint, COALESCE(sum(e.points - e.rp) FILTER (WHERE NOT e.whole), 0)::bigint,
	min(e.event_at) FILTER (WHERE NOT e.whole)
FROM (SELECT d.member, d.event_at, d.amount, d.points, COALESCE(bool_or(r.amount = 0), false) AS whole,
		COALESCE(sum(r.amount) FILTER (WHERE r.amount > 0), 0) AS ra, COALESCE(sum(-r.points) FILTER (WHERE r.amount > 0), 0) AS rp
	FROM deltas d LEFT JOIN deltas r ON r.reverses = d.id AND r.reverses <> ''
	WHERE d.kind = 'earn' AND d.rule = ''
	GROUP BY d.seq) AS e
GROUP BY 1, 2;
