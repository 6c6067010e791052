-- What each budget has leased to stores and not yet spent or settled (Tx.Outstanding), kept as a
-- running total by the triggers below whatever writes a lease, so that a pull, which checks it
-- for every budget it may grant from, reads one row instead of summing every store's lease: with
-- thousands of stores the sum made each pull's cost grow with the chain. A lease counts
-- MAX(granted - consumed, 0) while its state is not 'settled'. On SQLite one writer commits at a
-- time, so the one row per budget is no point of contention (hub/postgres keeps the same total).
CREATE TABLE lease_outstanding (
	budget TEXT PRIMARY KEY,
	amount INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO lease_outstanding (budget, amount)
SELECT budget, SUM(MAX(granted - consumed, 0)) FROM leases WHERE state != 'settled' GROUP BY budget;

CREATE TRIGGER leases_outstanding_insert AFTER INSERT ON leases WHEN NEW.state != 'settled'
BEGIN
	INSERT INTO lease_outstanding (budget, amount) VALUES (NEW.budget, MAX(NEW.granted - NEW.consumed, 0))
	ON CONFLICT (budget) DO UPDATE SET amount = amount + excluded.amount;
END;

CREATE TRIGGER leases_outstanding_update AFTER UPDATE OF budget, granted, consumed, state ON leases
BEGIN
	UPDATE lease_outstanding SET amount = amount - MAX(OLD.granted - OLD.consumed, 0)
	WHERE budget = OLD.budget AND OLD.state != 'settled';
	INSERT INTO lease_outstanding (budget, amount)
	SELECT NEW.budget, MAX(NEW.granted - NEW.consumed, 0) WHERE NEW.state != 'settled'
	ON CONFLICT (budget) DO UPDATE SET amount = amount + excluded.amount;
END;

CREATE TRIGGER leases_outstanding_delete AFTER DELETE ON leases WHEN OLD.state != 'settled'
BEGIN
	UPDATE lease_outstanding SET amount = amount - MAX(OLD.granted - OLD.consumed, 0) WHERE budget = OLD.budget;
END;
