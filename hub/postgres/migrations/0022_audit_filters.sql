-- GET /v1/audit pages back through the trail (before) and filters it by action or by key: the
-- entries of one action, or of one key, found by index however long the trail. (SQLite
-- migration 0037.)
CREATE INDEX audit_action ON audit (action, seq);
CREATE INDEX audit_key ON audit (key_id, seq);
