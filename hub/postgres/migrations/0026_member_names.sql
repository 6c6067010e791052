-- Members' names with a trigram index (pg_trgm), so that a search by name (GET /v1/members?name=,
-- the dashboard's search) reads the members whose name holds the text instead of every member.
-- The names are in a table of their own, kept in step with members.name by the triggers below:
-- a sale's update of a member row is not a HOT update (members.version is indexed), so a trigram
-- index on members itself would take a dozen new entries for every sale.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE member_names (
	id   text COLLATE "C" PRIMARY KEY REFERENCES members (id),
	name text NOT NULL
);
INSERT INTO member_names (id, name) SELECT id, name FROM members WHERE name <> '';
CREATE INDEX member_names_trigrams ON member_names USING gin (name gin_trgm_ops);

CREATE FUNCTION member_names_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO member_names (id, name) SELECT id, name FROM added WHERE name <> '';
	RETURN NULL;
END
$$;

CREATE TRIGGER member_names_added AFTER INSERT ON members
	REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION member_names_added();

CREATE FUNCTION member_names_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.name = '' THEN
		DELETE FROM member_names WHERE id = NEW.id;
	ELSE
		INSERT INTO member_names (id, name) VALUES (NEW.id, NEW.name) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER member_names_follow AFTER UPDATE OF name ON members
	FOR EACH ROW WHEN (NEW.name IS DISTINCT FROM OLD.name) EXECUTE FUNCTION member_names_follow();
