-- A store's connection health (connected, last seen, clock offset, outbox) in a table of its own.
-- The sync sessions' bookkeeping writes it: a claim, a release, and every renewal for every store
-- the renewing hub holds. The writer writes the stores' other columns: a pull's flushed floor, a
-- changed scope's version. On one row, each waited for the other's row lock, and the writer, which
-- holds the lock every hub process's writes take turns on, waited for a renewal of thousands of
-- sessions, then was refused (serialization failure) and ran again. (SQLite has one writer and
-- keeps the columns in stores.)
CREATE TABLE store_health (
	store           text COLLATE "C" PRIMARY KEY,
	connected       boolean NOT NULL DEFAULT false,
	last_seen       bigint NOT NULL DEFAULT 0,
	clock_offset_ms bigint NOT NULL DEFAULT 0,
	outbox          bigint NOT NULL DEFAULT 0
);
INSERT INTO store_health (store, connected, last_seen, clock_offset_ms, outbox)
	SELECT id, connected, last_seen, clock_offset_ms, outbox FROM stores;
ALTER TABLE stores DROP COLUMN connected, DROP COLUMN last_seen, DROP COLUMN clock_offset_ms, DROP COLUMN outbox;
