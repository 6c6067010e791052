-- Member card links (hub/card_links.go), as hub/sqlite's migration 0025: a link /m/<token>
-- carries the member's card epoch when it was made; revoking a member's links moves the epoch
-- on, so every link made before stops working. A member without a row is at epoch 0.
CREATE TABLE card_links (
	member     text COLLATE "C" PRIMARY KEY REFERENCES members (id),
	epoch      bigint NOT NULL,
	revoked_at bigint NOT NULL
);
