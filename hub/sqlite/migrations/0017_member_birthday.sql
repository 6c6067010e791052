-- A member's birthday, "MM-DD" or "YYYY-MM-DD" ('' when none was given), for the program's
-- birthday action. Personal data kept at the hub only: the member reads that feed the stores'
-- replicas leave it out. The index serves the daily birthday sweep, which looks members up by
-- month and day (the last five characters) whatever the form.
ALTER TABLE members ADD COLUMN birthday TEXT NOT NULL DEFAULT '';
CREATE INDEX members_birthday ON members (substr(birthday, -5)) WHERE birthday != '';
