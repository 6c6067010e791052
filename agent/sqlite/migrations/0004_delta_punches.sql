-- Punch card units each local delta added, so a member's pending punches are one indexed sum.
CREATE TABLE delta_punches (
	delta_id TEXT NOT NULL,
	card     TEXT NOT NULL,
	units    INTEGER NOT NULL,
	PRIMARY KEY (delta_id, card)
) WITHOUT ROWID;
