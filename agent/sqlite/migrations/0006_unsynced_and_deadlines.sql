-- The hub change version of the member at which the hub had applied an acknowledged delta, while
-- the member's synced copy (members.version) is older: the delta then still counts on top of the
-- copy (balance and punch cards), until a copy of that version or newer arrives. 0: the copy
-- includes it (or the delta is not acknowledged).
ALTER TABLE deltas ADD COLUMN hub_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deltas_member_unsynced ON deltas (member) WHERE hub_version > 0;
-- When each lease stops being usable, in agent time (ms; see the clock in store.go), so that an
-- agent restarted while offline goes on spending it until then. 0: unknown (a lease received
-- before this column existed), not usable until the hub renews it.
ALTER TABLE leases ADD COLUMN deadline_ms INTEGER NOT NULL DEFAULT 0;
