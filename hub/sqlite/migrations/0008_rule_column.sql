-- The earn rule of a delta ('' for purchases, or an action id), for tier qualification and caps.
ALTER TABLE deltas ADD COLUMN rule TEXT NOT NULL DEFAULT '';
