-- Fewer index entries per delta: the reversals index holds reversals only. Until now it held every
-- delta, under '' for those that reverse nothing, because "is d reversed?" (r.reverses = d.id)
-- cannot prove on its own that the value it looks up is not ''; every such look-up now says so
-- (AND r.reverses != ''), which lets SQLite use a partial index.
DROP INDEX deltas_reverses;
CREATE INDEX deltas_reverses ON deltas (reverses) WHERE reverses != '';
