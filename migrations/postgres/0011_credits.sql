-- Credits (SPEC 15): a balance spent by each allowed request's route cost, on a key or an
-- owner. NULL `credits_remaining` means no credits. `credits_refill` is JSON
-- `{"interval": "day"|"month", "amount": n}` or NULL. `credits_period` is the start (Unix
-- ms) of the refill period the balance belongs to. `credits_generation` is bumped by every
-- change an operator makes, so the data plane knows to take the stored balance over the one
-- it keeps; the balance the data plane writes back leaves it alone.
ALTER TABLE keys ADD COLUMN credits_remaining BIGINT;
ALTER TABLE keys ADD COLUMN credits_refill TEXT;
ALTER TABLE keys ADD COLUMN credits_period BIGINT;
ALTER TABLE keys ADD COLUMN credits_generation BIGINT;
ALTER TABLE owners ADD COLUMN credits_remaining BIGINT;
ALTER TABLE owners ADD COLUMN credits_refill TEXT;
ALTER TABLE owners ADD COLUMN credits_period BIGINT;
ALTER TABLE owners ADD COLUMN credits_generation BIGINT;
