-- Events (SPEC section 14). Each change writes its event to `events` in its own
-- transaction (the outbox), with one row in `webhook_deliveries` for every endpoint whose
-- filter takes it. Replicas claim due deliveries by lease (`lease_until`), so each is
-- attempted by one replica at a time and a replica that dies mid-delivery loses nothing.
-- `event_marks` remembers the events that are sent once (an expiry warning, a day's
-- quota.exceeded), so that no restart and no second replica sends them again.

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    at BIGINT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    next_attempt_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    lease_until BIGINT,
    lease_owner TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, event_seq);

CREATE TABLE event_marks (
    subject TEXT NOT NULL,
    mark TEXT NOT NULL,
    PRIMARY KEY (subject, mark)
);

-- The expiry scanner reads the keys expiring within a week.
CREATE INDEX keys_by_expiry ON keys (expires_at);
