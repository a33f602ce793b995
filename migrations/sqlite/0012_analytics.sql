-- Analytics (SPEC 15): requests per key, UTC hour, route and outcome (`allowed` or the
-- refusal's code), with the key's owner at the time ('' for none). Every replica adds its
-- counts to these rows, so they sum exactly; rows past `analytics.retention` are pruned.
CREATE TABLE analytics_hourly (
    hour BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    route TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (hour, key_id, owner_id, route, outcome)
);
CREATE INDEX analytics_by_key ON analytics_hourly (key_id, hour);
CREATE INDEX analytics_by_owner ON analytics_hourly (owner_id, hour);
