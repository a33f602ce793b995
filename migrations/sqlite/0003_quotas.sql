-- Daily quota counts of the local rate limiter, so a restart hands out no fresh quota.
-- `caller` is the limiter's caller key (k:key id, s:subject, a:address); `day` is the
-- start of the UTC day in Unix milliseconds.
CREATE TABLE quota_daily (
    caller TEXT NOT NULL,
    day BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (caller, day)
);
