-- Delta fields without a column of their own (clock offset, leases), as JSON.
ALTER TABLE deltas ADD COLUMN body TEXT NOT NULL DEFAULT '';
