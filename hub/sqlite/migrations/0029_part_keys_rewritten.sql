-- The part keys kept from before loyalty.PartKey (marked legacy by 0028) are rewritten where the
-- answer kept with them says which order they belong to (its order_id): a key "INV/2" answered
-- for order INV is refund or reward 2 of INV, and becomes INV, U+001F, 2; a key answered for order
-- "INV/2" itself is that order's own key, not a part. The others stay legacy, looked up the old
-- way (Tx.LegacyIdempotent). A key of either kind then never blocks another order's call.
UPDATE idempotency SET legacy = 0
WHERE legacy = 1 AND json_valid(response) AND json_extract(response, '$.order_id') = key;
UPDATE idempotency
SET key = json_extract(response, '$.order_id') || char(31) || substr(key, length(json_extract(response, '$.order_id')) + 2),
	legacy = 0
WHERE legacy = 1 AND json_valid(response)
	AND substr(key, 1, length(json_extract(response, '$.order_id')) + 1) = json_extract(response, '$.order_id') || '/';
