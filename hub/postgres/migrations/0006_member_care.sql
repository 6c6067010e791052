-- Member care (hub/care.go): the attributes an operator keeps on a member (a JSON object of
-- strings; '' for none), and when the member's personal data was erased (NULL: never).
ALTER TABLE members ADD COLUMN attributes text NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN erased_at bigint;

-- A member's export and erasure find the rows about them by these.
CREATE INDEX members_referred_by ON members (referred_by) WHERE referred_by <> '';
CREATE INDEX vouchers_member ON vouchers (member);
CREATE INDEX audit_target ON audit (target);
-- Rejections are found by the text of the delta's member field (care.go): a cast to jsonb, which an
-- index on the member would need, fails on a \u0000 escape that a hostile store may send.
