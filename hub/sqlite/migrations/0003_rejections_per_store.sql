-- A rejection belongs to the store that pushed it: two stores can push deltas with the same id.
CREATE TABLE rejections_by_store (
	store    TEXT NOT NULL,
	delta_id TEXT NOT NULL,
	delta    TEXT NOT NULL,
	code     TEXT NOT NULL,
	message  TEXT NOT NULL,
	at       INTEGER NOT NULL,
	PRIMARY KEY (store, delta_id)
);
INSERT INTO rejections_by_store (store, delta_id, delta, code, message, at)
	SELECT store, delta_id, delta, code, message, at FROM rejections;
DROP TABLE rejections;
ALTER TABLE rejections_by_store RENAME TO rejections;
CREATE INDEX rejections_at ON rejections (at);
