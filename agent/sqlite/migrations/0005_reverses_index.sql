-- Lookups by reversed delta bind a parameter SQLite cannot prove non-empty, so the partial index
-- was never used; a full index is.
DROP INDEX deltas_reverses;
CREATE INDEX deltas_reverses ON deltas (reverses);
