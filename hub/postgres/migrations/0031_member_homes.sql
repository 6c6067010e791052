-- Members by home store, in id order, so that a search by home store (GET /v1/members?
-- home_store=, the dashboard's search) reads that store's members instead of every member in id
-- order until a page is full: a store with a hundred members among millions took seconds a page.
-- They are in a table of their own, kept by the triggers below: a sale's update of a member row is
-- seldom a HOT update (it moves review_at or expire_at, which are indexed), so an index on members
-- itself would take a new entry for most sales; this one is written when a member is added (a home
-- store never changes after). The tier has no such table: a tier review would write it for every
-- member it moves (16 µs each measured, a mass re-tiering of millions in minutes), and a search by
-- tier finds a common tier's page quickly in id order. It names no foreign key: rows come only
-- from members, which are never deleted, and the check on every insert slowed imports.
CREATE TABLE member_homes (
	id         text COLLATE "C" PRIMARY KEY,
	home_store text NOT NULL
);
INSERT INTO member_homes (id, home_store) SELECT id, home_store FROM members;
CREATE INDEX member_homes_store ON member_homes (home_store, id);

CREATE FUNCTION member_homes_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO member_homes (id, home_store) SELECT id, home_store FROM added;
	RETURN NULL;
END
$$;

CREATE TRIGGER member_homes_added AFTER INSERT ON members
	REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION member_homes_added();

-- Nothing writes a member's home store after the member is added; should anything, this keeps
-- the row in step.
CREATE FUNCTION member_homes_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE member_homes SET home_store = NEW.home_store WHERE id = NEW.id;
	RETURN NULL;
END
$$;

CREATE TRIGGER member_homes_follow AFTER UPDATE OF home_store ON members
	FOR EACH ROW WHEN (NEW.home_store IS DISTINCT FROM OLD.home_store) EXECUTE FUNCTION member_homes_follow();
