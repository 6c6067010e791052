-- Notifications go only to the stores a change concerns (Tx.ChangedStores): the scope rows and
-- the stores changed in a range of versions are found through these indexes.
CREATE INDEX member_stores_changed ON member_stores (version);
ALTER TABLE stores ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE INDEX stores_version ON stores (version);

-- A scope row starts at its member's version, whoever inserts it (an older binary's Subscribe
-- inserts none), so that the store's feed carries the member's next change.
CREATE FUNCTION member_stores_start() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.version = 0 THEN
		SELECT version INTO NEW.version FROM members WHERE id = NEW.member;
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER member_stores_start BEFORE INSERT ON member_stores
	FOR EACH ROW EXECUTE FUNCTION member_stores_start();
