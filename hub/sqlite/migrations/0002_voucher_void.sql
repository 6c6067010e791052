-- A voucher whose purchase was refunded is cancelled; later uses are conflicts.
ALTER TABLE vouchers ADD COLUMN voided_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX vouchers_delta ON vouchers (delta_id);
