-- A member's rejected deltas, for their erasure and their export, found through an index of the
-- delta's member instead of a search of every rejection's text (as on SQLite, rejections_member).
-- Rejections are kept, so their number grows with the chain's history. The member is a column of
-- its own, not an expression over the delta's JSON: a rejected delta may hold what jsonb refuses
-- (a \u0000 escape), and a rejection must be stored whatever it holds. Rows of before are read
-- with the text's first "member" field, as the search they replace did.
ALTER TABLE rejections ADD COLUMN member text NOT NULL DEFAULT '';
UPDATE rejections SET member = coalesce(substring(delta from '"member":"([^"\\]*)"'), '') WHERE delta LIKE '%"member":"%';
CREATE INDEX rejections_member ON rejections (member) WHERE member <> '';
