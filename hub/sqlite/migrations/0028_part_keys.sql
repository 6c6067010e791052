-- The key of a part of an online order (a reward or voucher redeemed on it, a partial refund of
-- it) is now the order id and the part joined by a control character (loyalty.PartKey). It was
-- the two joined by "/", so that order "A/2" and partial refund 2 of order A shared one key. The
-- part keys kept from before are marked: only they are looked up the old way
-- (Tx.LegacyIdempotent), so that a retry sent across the upgrade still gets its first answer, and
-- a newer order id holding "/" never matches another order's part.
ALTER TABLE idempotency ADD COLUMN legacy INTEGER NOT NULL DEFAULT 0;
UPDATE idempotency SET legacy = 1 WHERE scope IN ('redeem', 'reverse') AND instr(key, '/') > 0;
