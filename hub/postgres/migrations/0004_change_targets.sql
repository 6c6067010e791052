-- Notifications go only to the stores a change concerns (Tx.ChangedStores): the scope rows and
-- the stores changed in a range of versions are found through these indexes.
CREATE INDEX member_stores_changed ON member_stores (version);
ALTER TABLE stores ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE INDEX stores_version ON stores (version);
