-- Credentials, policy, audit, idempotency and usage for the embedded store.
-- Times are Unix milliseconds. Every change to keys or policy takes the next id of
-- `changes` as its version, so replicas can sync "everything after version N".
-- Booleans are BIGINT 0/1: sqlx's Any driver maps no SQLite boolean type.

CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL
);

CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    key_type TEXT NOT NULL,
    permissions TEXT NOT NULL,
    role TEXT,
    environment TEXT NOT NULL,
    start TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    grace_digest BLOB,
    grace_until BIGINT,
    secret_version BIGINT NOT NULL,
    ip_allowlist TEXT NOT NULL,
    allow_infrastructure_ips BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT,
    rate_limit TEXT,
    metadata TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX keys_by_version ON keys (version);
CREATE INDEX keys_by_creation ON keys (created_at, id);

CREATE TABLE retired_digests (
    digest BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX retired_digests_by_version ON retired_digests (version);

CREATE TABLE policy (
    id BIGINT PRIMARY KEY,
    block_legacy_keys BIGINT NOT NULL,
    max_key_lifetime_ms BIGINT,
    version BIGINT NOT NULL
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT
);

CREATE TABLE idempotency (
    idem_key TEXT NOT NULL,
    scope TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (idem_key, scope)
);

CREATE TABLE usage_daily (
    key_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key_id, day, outcome)
);
