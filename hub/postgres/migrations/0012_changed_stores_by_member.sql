-- As hub/sqlite's migration 0027: the stores a change concerns (Tx.ChangedStores) are found from
-- the members changed in a range of versions (members_version) and their scope rows
-- (member_stores_member). The index on the scope rows' versions cost an index entry moved per store
-- holding the member, for every member a push touched; the pull's (store, version) index stays.
DROP INDEX member_stores_changed;
