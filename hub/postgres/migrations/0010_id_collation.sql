-- Member and store ids are COLLATE "C" wherever they are kept, as members.id and stores.id are.
-- An index serves a comparison only in its own collation, and a comparison of a "C" value with a
-- column of the database's default collation is made in "C": the trigger that keeps each scope
-- row's version (member_stores_follow: WHERE member = NEW.id) could not use the member_stores
-- index and read the whole table for every member written, which made a push's batched member
-- update cost about a millisecond per member; joins from members to the ledger and the running
-- totals were in the same case. Text to text of another collation rewrites no rows; the indexes
-- on these columns are built again.
ALTER TABLE member_stores ALTER COLUMN member TYPE text COLLATE "C", ALTER COLUMN store TYPE text COLLATE "C";
ALTER TABLE deltas ALTER COLUMN member TYPE text COLLATE "C", ALTER COLUMN store TYPE text COLLATE "C";
ALTER TABLE vouchers ALTER COLUMN member TYPE text COLLATE "C";
ALTER TABLE member_qualifying ALTER COLUMN member TYPE text COLLATE "C";
ALTER TABLE conflicts ALTER COLUMN member TYPE text COLLATE "C", ALTER COLUMN store TYPE text COLLATE "C";
