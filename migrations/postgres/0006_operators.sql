-- The workbench: operators who sign in, admin tokens for automation, console sessions,
-- and failed sign-ins (counted per email across replicas). Tokens and session ids are
-- stored as SHA-256 digests only. Audit entries name their actor (a JSON object) with its
-- kind and id beside it for filtering.
CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT,
    version BIGINT NOT NULL
);
CREATE INDEX operators_by_creation ON operators (created_at, id);

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest BYTEA NOT NULL UNIQUE,
    start TEXT NOT NULL,
    permissions TEXT NOT NULL,
    role TEXT,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT,
    version BIGINT NOT NULL
);
CREATE INDEX admin_tokens_by_creation ON admin_tokens (created_at, id);

CREATE TABLE sessions (
    id_digest BYTEA PRIMARY KEY,
    operator_id TEXT NOT NULL,
    csrf_digest BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX sessions_by_operator ON sessions (operator_id);

CREATE TABLE signin_failures (
    email_key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX signin_failures_by_email ON signin_failures (email_key, at);

ALTER TABLE audit ADD COLUMN actor_kind TEXT;
ALTER TABLE audit ADD COLUMN actor_id TEXT;
CREATE INDEX audit_by_actor ON audit (actor_id, id);
