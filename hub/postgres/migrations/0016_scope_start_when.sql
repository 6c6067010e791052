-- A scope row inserted with its member's version (Subscribe, SubscribeAll) does not call the
-- function that would look the version up: the trigger's condition is checked first, without a
-- call, also for the rows a conflict then skips.
DROP TRIGGER member_stores_start ON member_stores;
CREATE TRIGGER member_stores_start BEFORE INSERT ON member_stores
	FOR EACH ROW WHEN (NEW.version = 0) EXECUTE FUNCTION member_stores_start();
