-- What each applied delta charged to each budget, and from which lease. A reversal gives back
-- exactly these charges, whatever the program says by then and whatever lease the reversal names.
CREATE TABLE budget_charges (
	delta  TEXT NOT NULL,
	budget TEXT NOT NULL,
	lease  TEXT NOT NULL DEFAULT '', -- '' when no lease of the store's was counted against
	amount INTEGER NOT NULL,
	PRIMARY KEY (delta, budget)
) WITHOUT ROWID;
-- Deltas applied before this version have no charges recorded: their reversals are counted
-- from the current program, as before.
INSERT INTO counters (name, value) SELECT 'charges_from', COALESCE(MAX(seq), 0) FROM deltas;
