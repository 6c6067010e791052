-- How each use's charge depends on its order's other redemptions (loyalty.OrderRule), recorded
-- when it is made, so that the agent can count it again without the program it was made under.
ALTER TABLE lease_use ADD COLUMN order_rule TEXT NOT NULL DEFAULT '';

-- The orders the hub rejected a delta of, whose uses the agent must split again without it, as
-- the hub counted them (agent.resplit), before it next spends a lease or prunes the order.
CREATE TABLE order_resplit (
	order_id TEXT PRIMARY KEY
) WITHOUT ROWID;
