-- A member's earlier countries, each with when it stopped being theirs: a store that had not
-- pulled the change yet stamps a sale with the country it knew, and the hub accepts that claim
-- (hub/claims.go). Kept for claims.max_offline (Hub.ForgetPastCountries), erased with the member.
CREATE TABLE member_countries (
	member   TEXT NOT NULL,
	country  TEXT NOT NULL,
	until_at INTEGER NOT NULL
);
CREATE INDEX member_countries_member ON member_countries (member, until_at);
CREATE INDEX member_countries_until ON member_countries (until_at);
