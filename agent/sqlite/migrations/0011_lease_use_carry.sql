-- A redemption's use on an order that had counted already was spared part of its worth
-- (spared); when another redemption of the order is reversed, it takes over as much of what that
-- one freed (carried), as the hub does (loyalty.CarryOver). A reversal of it gives back amount +
-- carried. A lease's spending stays the sum of amount: what a use carries, the reversal it
-- came from did not give back.
ALTER TABLE lease_use ADD COLUMN spared INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lease_use ADD COLUMN carried INTEGER NOT NULL DEFAULT 0;
