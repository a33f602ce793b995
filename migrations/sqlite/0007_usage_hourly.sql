-- Requests per key per UTC hour by outcome, beside the daily counts: the console charts a
-- key's last hours from them. Written in the same batches; rows older than 90 days are
-- pruned by the writer.
CREATE TABLE usage_hourly (
    key_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
);
CREATE INDEX usage_hourly_by_hour ON usage_hourly (hour);
