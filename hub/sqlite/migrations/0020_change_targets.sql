-- Notifications go only to the stores a change concerns (Tx.ChangedStores): the scope rows and
-- the stores changed in a range of versions are found through these indexes.
CREATE INDEX member_stores_changed ON member_stores (version);
ALTER TABLE stores ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX stores_version ON stores (version);
-- A scope row starts at its member's version, whoever inserts it (an older binary's Subscribe
-- inserts none), so that the store's feed carries the member's next change.
CREATE TRIGGER member_stores_start AFTER INSERT ON member_stores WHEN NEW.version = 0
BEGIN UPDATE member_stores SET version = (SELECT m.version FROM members m WHERE m.id = NEW.member) WHERE store = NEW.store AND member = NEW.member; END;
