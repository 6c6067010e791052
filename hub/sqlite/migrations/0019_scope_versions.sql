-- The change feed per store. Each scope row carries its member's change version, kept equal by a
-- trigger whatever writes the member, so that a pull finds what changed in one store's scope
-- through the (store, version) index instead of reading every member the store keeps.
ALTER TABLE member_stores ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
UPDATE member_stores SET version = (SELECT m.version FROM members m WHERE m.id = member_stores.member);
CREATE INDEX member_stores_version ON member_stores (store, version);
CREATE INDEX member_stores_member ON member_stores (member);
CREATE TRIGGER member_stores_follow AFTER UPDATE OF version ON members WHEN NEW.version IS NOT OLD.version
BEGIN UPDATE member_stores SET version = NEW.version WHERE member = NEW.id; END;
