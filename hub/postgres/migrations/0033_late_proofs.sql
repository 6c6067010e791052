-- The changes of stores dated at or before their member's last expiry that carried the member's
-- code as the till scanned it: the replay counts them at their event time. Any other store change
-- counts from when the hub received it: a store can invent a sale and date it before an expiry.
CREATE TABLE late_proofs (
	member text COLLATE "C" NOT NULL,
	delta  text COLLATE "C" NOT NULL,
	PRIMARY KEY (member, delta)
);
