-- Members whose personal data was erased at the hub (loyalty.Member.Erased): their copy keeps
-- the id and balance, and the store refuses their QR codes.
ALTER TABLE members ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;
