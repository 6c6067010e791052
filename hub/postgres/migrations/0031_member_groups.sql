-- Members by home store and by tier, in id order, so that a search by either (GET /v1/members?
-- home_store= or ?tier=, the dashboard's search) reads the members it finds instead of every
-- member in id order until a page is full: a store with a hundred members among millions took
-- seconds a page. They are in a table of their own, kept in step with members by the triggers
-- below: a sale's update of a member row is seldom a HOT update (it moves review_at or expire_at,
-- which are indexed), so an index on members itself would take a new entry for most sales; this
-- one changes only when a member's home store or tier does. It names no foreign key: rows come only from members, which
-- are never deleted, and the check of one on every insert made an import a fifth slower.
CREATE TABLE member_groups (
	id         text COLLATE "C" PRIMARY KEY,
	home_store text NOT NULL,
	tier       text NOT NULL
);
INSERT INTO member_groups (id, home_store, tier) SELECT id, home_store, tier FROM members;
CREATE INDEX member_groups_home_store ON member_groups (home_store, id);
CREATE INDEX member_groups_tier ON member_groups (tier, id);

CREATE FUNCTION member_groups_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO member_groups (id, home_store, tier) SELECT id, home_store, tier FROM added;
	RETURN NULL;
END
$$;

CREATE TRIGGER member_groups_added AFTER INSERT ON members
	REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION member_groups_added();

-- A member's tier is written by the hub's batched member updates (Tx.UpdateMembers), which write
-- the changed tiers here too, in one statement a batch: a trigger for each row cost a tier review
-- that moved half of 100,000 members 1.7 s more. Nothing writes a member's home store after the
-- member is added; should anything, this keeps the row in step.
CREATE FUNCTION member_groups_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE member_groups SET home_store = NEW.home_store WHERE id = NEW.id;
	RETURN NULL;
END
$$;

CREATE TRIGGER member_groups_follow AFTER UPDATE OF home_store ON members
	FOR EACH ROW WHEN (NEW.home_store IS DISTINCT FROM OLD.home_store)
	EXECUTE FUNCTION member_groups_follow();
