-- What each budget has leased to stores and not yet spent or settled (Tx.Outstanding), as
-- hub/sqlite's migration 0026: a running total kept by a trigger whatever writes a lease, so that
-- a pull, which checks it for every budget it may grant from, reads one row instead of summing
-- every store's lease. A lease counts greatest(granted - consumed, 0) while its state is not
-- 'settled'. Leases are written only by transactions that hold the writer lock (store.go, "One
-- writer at a time"), so the one row per budget is no point of contention.
CREATE TABLE lease_outstanding (
	budget text PRIMARY KEY,
	amount bigint NOT NULL
);

INSERT INTO lease_outstanding (budget, amount)
SELECT budget, sum(greatest(granted - consumed, 0)) FROM leases WHERE state <> 'settled' GROUP BY budget;

CREATE FUNCTION leases_outstanding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state <> 'settled' THEN
		UPDATE lease_outstanding SET amount = amount - greatest(OLD.granted - OLD.consumed, 0) WHERE budget = OLD.budget;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.state <> 'settled' THEN
		INSERT INTO lease_outstanding (budget, amount) VALUES (NEW.budget, greatest(NEW.granted - NEW.consumed, 0))
		ON CONFLICT (budget) DO UPDATE SET amount = lease_outstanding.amount + excluded.amount;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER leases_outstanding AFTER INSERT OR UPDATE OR DELETE ON leases
	FOR EACH ROW EXECUTE FUNCTION leases_outstanding();
