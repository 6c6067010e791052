-- Reads that look only at what is still open search indexes of it alone: the lease expiry job,
-- every poll interval, for the active leases that have run out; a pull, for the store's leases
-- not settled and whether it has a rule version it has not acknowledged; GET /v1/budgets, for a
-- budget's leases not settled. Settled leases and acknowledged rule versions stay for the
-- record, and their number grows with every lease a chain granted and every program it published.
CREATE INDEX leases_active_expiry ON leases (expires_at, id) WHERE state = 'active';
CREATE INDEX leases_store_open ON leases (store, created_at, id) WHERE state != 'settled';
CREATE INDEX leases_budget_open ON leases (budget, store, id) WHERE state != 'settled';
CREATE INDEX store_programs_unreceived ON store_programs (store) WHERE received_at = 0;
