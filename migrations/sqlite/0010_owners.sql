-- Owners (SPEC 15): the customers a team issues keys to. An owner's `rate_limit` (JSON
-- `{"per_minute", "per_day"}`, NULL for none) is shared by all its keys. `version` is the
-- change that last wrote the row, so the change feed carries owners to the data plane.
CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    external_id TEXT UNIQUE,
    rate_limit TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX owners_by_version ON owners (version);
CREATE INDEX owners_by_creation ON owners (created_at, id);

-- The owner a key belongs to, if any.
ALTER TABLE keys ADD COLUMN owner_id TEXT REFERENCES owners (id);
CREATE INDEX keys_by_owner ON keys (owner_id, created_at);
