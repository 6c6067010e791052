-- A member's rejected deltas, for their erasure and their export, found through an index of the
-- delta's member instead of a search of every rejection's text (as on SQLite, rejections_member).
-- Rejections are kept, so their number grows with the chain's history.
CREATE INDEX rejections_member ON rejections ((delta::jsonb ->> 'member'));
