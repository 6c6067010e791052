-- Lighter writes of a member's balance and change version, which every applied delta makes.
-- No query on PostgreSQL finds members by their change version (the feed goes through the scope
-- rows, member_stores, and their own version indexes), so the index on it only cost each of
-- those writes an index entry. Without it, and with room left in each page (fillfactor; pages
-- written from now on), a write of only those columns can be a heap-only tuple update, which
-- touches no index at all.
DROP INDEX members_version;
ALTER TABLE members SET (fillfactor = 85);
