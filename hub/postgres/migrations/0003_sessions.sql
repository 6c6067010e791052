-- Each store's one live sync session, across the hub processes on the database (hub/sessions.go),
-- as hub/sqlite's migration 0019: the process that holds it (owner, '' once the session ended),
-- the agent's address, when the session started (unix nanoseconds: the session's identity, later
-- for every later session of the store), and until when it lives unless its owner renews it
-- (unix milliseconds, on the database server's clock).
CREATE TABLE sessions (
	store    text COLLATE "C" PRIMARY KEY,
	owner    text NOT NULL,
	remote   text NOT NULL DEFAULT '',
	started  bigint NOT NULL,
	deadline bigint NOT NULL
);
CREATE INDEX sessions_owner ON sessions (owner);
CREATE INDEX sessions_deadline ON sessions (deadline) WHERE owner <> '';
