-- Members by home store and by tier, in id order, so that a search by either (GET /v1/members?
-- home_store= or ?tier=, the dashboard's search) reads the members it finds instead of every
-- member in id order until a page is full: a store with a hundred members among millions took
-- seconds a page. A sale's update of a member names only the columns it changes (balance,
-- version, times), and SQLite touches only the indexes on those, so these cost a sale nothing;
-- a member's new tier or home store moves one entry.
CREATE INDEX members_home_store ON members (home_store, id);
CREATE INDEX members_tier ON members (tier, id);
