-- The part keys kept from before loyalty.PartKey (marked legacy by 0012) are rewritten where the
-- answer kept with them says which order they belong to (its order_id): a key "INV/2" answered
-- for order INV is refund or reward 2 of INV, and becomes INV, U+001F, 2; a key answered for order
-- "INV/2" itself is that order's own key, not a part. The others stay legacy, looked up the old
-- way (Tx.LegacyIdempotent). A key of either kind then never blocks another order's call.
UPDATE idempotency SET legacy = false
WHERE legacy AND response::jsonb ->> 'order_id' = key;
UPDATE idempotency
SET key = (response::jsonb ->> 'order_id') || chr(31) || substr(key, length(response::jsonb ->> 'order_id') + 2),
	legacy = false
WHERE legacy AND left(key, length(response::jsonb ->> 'order_id') + 1) = (response::jsonb ->> 'order_id') || '/';
