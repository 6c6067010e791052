-- The database's epoch (hub.Tx.Epoch): drawn now, and again when the database is restored from a
-- backup. abs() of a random 64-bit number; 0 is never an epoch.
INSERT INTO counters (name, value) VALUES ('epoch', (abs(random() % 9007199254740991) + 1));
