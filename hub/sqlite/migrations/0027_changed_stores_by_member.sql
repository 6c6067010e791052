-- The stores a change concerns (Tx.ChangedStores) are found from the members changed in a range of
-- versions (members_version) and their scope rows (member_stores_member), not from an index on the
-- scope rows' versions. Every sale rewrites its member's version in each of the member's scope rows
-- (member_stores_follow), so that index was one more B-tree entry moved per store holding the
-- member, for every member a push touched; the pull's own index, (store, version), stays.
DROP INDEX member_stores_changed;
