-- Fewer index entries per delta, as hub/sqlite's migration 0020: the reversals and vouchers indexes
-- hold only the deltas that reverse something or use a voucher. Until now they held every delta,
-- under '' for the others, because a look-up by a parameter or another column (r.reverses = d.id,
-- d.voucher = $1) cannot prove on its own that the value is not ''; every such look-up now says so
-- (AND r.reverses <> '', AND d.voucher <> ''), which lets PostgreSQL use a partial index.
DROP INDEX deltas_reverses;
CREATE INDEX deltas_reverses ON deltas (reverses) WHERE reverses <> '';
DROP INDEX deltas_voucher;
CREATE INDEX deltas_voucher ON deltas (voucher) WHERE voucher <> '';
