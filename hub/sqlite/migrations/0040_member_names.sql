-- Members' names indexed by their trigrams, so that a search by name (GET /v1/members?name=, the
-- dashboard's search) reads the members whose name holds the text instead of every member. The
-- index holds no copy of the names (content='members'): the triggers below keep it in step with
-- members.name, and only writes that change a name pay for it, not a sale's balance update.
-- secure-delete takes an old name's entries out of the index at once, so that an erased name
-- leaves no trigrams behind (and with the hub's secure_delete, none in the file either).
CREATE VIRTUAL TABLE member_names USING fts5(name, content = 'members', content_rowid = 'rowid', columnsize = 0, tokenize = 'trigram case_sensitive 0');
INSERT INTO member_names (member_names, rank) VALUES ('secure-delete', 1);
INSERT INTO member_names (member_names) VALUES ('rebuild');

CREATE TRIGGER member_names_insert AFTER INSERT ON members WHEN NEW.name != '' BEGIN
	INSERT INTO member_names (rowid, name) VALUES (NEW.rowid, NEW.name);
END;

CREATE TRIGGER member_names_update AFTER UPDATE OF name ON members WHEN NEW.name IS NOT OLD.name BEGIN
	INSERT INTO member_names (member_names, rowid, name) SELECT 'delete', OLD.rowid, OLD.name WHERE OLD.name != '';
	INSERT INTO member_names (rowid, name) SELECT NEW.rowid, NEW.name WHERE NEW.name != '';
END;
