-- The birthday sweep pages through one day's members in id order (BirthdayMembers): with the
-- member's id in the index, each page is a range of it, not a sort of every member of the day.
-- The rebuild runs in the migration's transaction: writes to members wait for it, once, at the
-- upgrade (CREATE INDEX CONCURRENTLY cannot run in a transaction).
DROP INDEX members_birthday;
CREATE INDEX members_birthday ON members (right(birthday, 5), id) WHERE birthday <> '';
