-- The change that last wrote a key's balance back from the data plane. A write-back stamps
-- this, not `version`, so replicas read the balances alone (one narrow row each), not every
-- column of every key that spent credits: ten thousand keys in use are ten thousand rows
-- every few seconds.
ALTER TABLE keys ADD COLUMN credits_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX keys_credits_version ON keys (credits_version);
