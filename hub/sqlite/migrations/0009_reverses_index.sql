-- "Is this delta reversed?" (r.reverses = d.id) cannot use a partial index: SQLite cannot prove
-- d.id != ''. A full index keeps those lookups from scanning the ledger.
DROP INDEX deltas_reverses;
CREATE INDEX deltas_reverses ON deltas (reverses);
