-- A redemption's charge on an order that had counted already was spared part of its worth
-- (spared); when another redemption of the order is reversed, it takes over as much of what that
-- one freed (carried), so the order goes on counting what the redemptions left would have
-- (loyalty.CarryOver). A reversal of it frees amount + carried.
ALTER TABLE budget_charges ADD COLUMN spared INTEGER NOT NULL DEFAULT 0;
ALTER TABLE budget_charges ADD COLUMN carried INTEGER NOT NULL DEFAULT 0;
