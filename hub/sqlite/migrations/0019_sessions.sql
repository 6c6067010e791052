-- Each store's one live sync session, across the hub processes on the database (hub/sessions.go;
-- on SQLite there is one process, and the same code runs): the process that holds it (owner, ''
-- once the session ended), the agent's address, when the session started (unix nanoseconds:
-- the session's identity, later for every later session of the store), and until when it lives
-- unless its owner renews it (unix milliseconds, on the database's clock).
CREATE TABLE sessions (
	store    TEXT PRIMARY KEY,
	owner    TEXT NOT NULL,
	remote   TEXT NOT NULL DEFAULT '',
	started  INTEGER NOT NULL,
	deadline INTEGER NOT NULL
);
CREATE INDEX sessions_owner ON sessions (owner);
CREATE INDEX sessions_deadline ON sessions (deadline) WHERE owner <> '';
