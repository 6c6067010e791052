-- Member care (hub/care.go): the attributes an operator keeps on a member (a JSON object of
-- strings; '' for none), and when the member's personal data was erased (NULL: never).
ALTER TABLE members ADD COLUMN attributes TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN erased_at INTEGER;

-- A member's export and erasure find the rows about them by these.
CREATE INDEX members_referred_by ON members (referred_by) WHERE referred_by != '';
CREATE INDEX vouchers_member ON vouchers (member);
CREATE INDEX audit_target ON audit (target);
CREATE INDEX rejections_member ON rejections (json_extract(delta, '$.member'));
