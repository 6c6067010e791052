-- A rejection keeps the digest of the delta as its store pushed it (Delta.Hash), so that the same
-- delta pushed again gets the same answer (a delta's outcome is decided once) even where the
-- record no longer holds it as pushed: an erased member's country is taken out of both. Older
-- rejections have none; the hub then digests the delta they keep. (SQLite migration 0034.)
ALTER TABLE rejections ADD COLUMN hash text NOT NULL DEFAULT '';
