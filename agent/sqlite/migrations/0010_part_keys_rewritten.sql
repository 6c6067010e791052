-- The part keys kept from before loyalty.PartKey (marked legacy by 0009) are rewritten where the
-- answer kept with them says which order they belong to (its order_id): a key "INV/2" answered
-- for order INV is refund or reward 2 of INV, and becomes INV, U+001F, 2; a key answered for order
-- "INV/2" itself is that order's own key, not a part. Only keys whose answer was dropped
-- (pos.results_retention) stay legacy, looked up the old way (LegacyPosResult). A key of either
-- kind then never blocks another order's call.
UPDATE pos_requests SET legacy = 0
WHERE legacy = 1 AND response != '' AND json_valid(response) AND json_extract(response, '$.order_id') = order_id;
UPDATE pos_requests
SET order_id = json_extract(response, '$.order_id') || char(31) || substr(order_id, length(json_extract(response, '$.order_id')) + 2),
	legacy = 0
WHERE legacy = 1 AND response != '' AND json_valid(response)
	AND substr(order_id, 1, length(json_extract(response, '$.order_id')) + 1) = json_extract(response, '$.order_id') || '/';
