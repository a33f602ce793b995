//! The gateway's notion of now, in Unix milliseconds. Decisions take `now` as a parameter;
//! this is where the running process reads it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Unix time in milliseconds, shifted by the test offset when one is set.
pub fn now_ms() -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    real + OFFSET_MS.load(Ordering::Relaxed)
}

/// Shifts this process's clock, for end-to-end tests of expiry. `serve` honours the
/// `TOLLGATE_TEST_CLOCK_OFFSET` variable only on a gateway whose `environment` is `test`.
pub fn set_offset_ms(offset: i64) {
    OFFSET_MS.store(offset, Ordering::Relaxed);
}

/// The UTC day of `ms`, as days since the epoch.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// RFC 3339 in UTC with a `Z`, to the second: `2027-02-01T00:00:00Z`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// RFC 3339 in UTC to the millisecond, for log lines.
pub fn rfc3339_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An HTTP date (RFC 9110 IMF-fixdate): `Tue, 01 Dec 2026 12:00:00 GMT`.
pub fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `YYYY-MM-DD` of a day number.
pub fn date_of_day(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * 86_400_000)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let ms = parse_rfc3339("2027-02-01T00:00:00Z").unwrap();
        assert_eq!(rfc3339(ms), "2027-02-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2027-02-01T01:00:00+01:00"), Some(ms));
        assert_eq!(parse_rfc3339("tomorrow"), None);
        assert_eq!(date_of_day(day_of(ms)), "2027-02-01");
        assert_eq!(day_of(ms - 1) + 1, day_of(ms));
        assert_eq!(http_date(ms), "Mon, 01 Feb 2027 00:00:00 GMT");
    }
}
