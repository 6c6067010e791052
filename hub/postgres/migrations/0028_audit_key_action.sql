-- An audit query by key and action (GET /v1/audit?key_id=…&action=…) searches this index from
-- before: the action's index alone read every entry of the action, all the web shop's sign-ups
-- for one key's member.add.
CREATE INDEX audit_key_action ON audit (key_id, action, seq);
