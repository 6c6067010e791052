-- Dashboard sessions signed out before their cookie expires (until): a copy of the cookie, kept
-- by someone who read it off the browser, is refused once its owner has signed out.
CREATE TABLE ended_sessions (
	id    text PRIMARY KEY,
	until bigint NOT NULL
);
