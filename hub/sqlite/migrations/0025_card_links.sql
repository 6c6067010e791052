-- Member card links (hub/card_links.go): a link /m/<token> carries the member's card epoch when
-- it was made; revoking a member's links moves the epoch on, so every link made before stops
-- working. A member without a row is at epoch 0. No personal data: the id and two numbers.
CREATE TABLE card_links (
	member     TEXT PRIMARY KEY REFERENCES members (id),
	epoch      INTEGER NOT NULL,
	revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
