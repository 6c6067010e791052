-- What the program rules need about a member: country (campaign segments) and punch cards.
ALTER TABLE members ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN punches TEXT NOT NULL DEFAULT '';
