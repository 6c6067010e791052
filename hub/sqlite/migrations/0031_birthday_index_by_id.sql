-- The birthday sweep pages through one day's members in id order (BirthdayMembers). With the
-- member's id in the index, each page is a range of it; before, every page read all the members
-- of the sweep's days and sorted them, so a sweep cost the square of their number (8 seconds at
-- a million members, where about 30,000 have their birthday within the catch-up days).
DROP INDEX members_birthday;
CREATE INDEX members_birthday ON members (substr(birthday, -5), id) WHERE birthday != '';
