//! Waiting for what arrives a moment later: metrics, usage batches, window edges.

use super::admin::Admin;
use super::gateway::Gateway;
use std::time::{Duration, Instant};

/// The value of a Prometheus sample line starting with `prefix` (labels included).
pub fn metric(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Scrapes until the sample `prefix` reaches `expected` (at most 3 s), and returns the
/// last scrape. Request metrics are recorded after the response is sent, so a client can
/// see its answer a moment before the counter moves.
pub fn scrape_until(gw: &Gateway, prefix: &str, expected: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = gw.scrape();
        if metric(&scrape, prefix) >= expected || Instant::now() > deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A key's usage once `done` holds of it (usage is written in batches every 5 s, later on a
/// busy machine), or as it is at the deadline, for the caller's assertion to show.
pub async fn usage_when(
    admin: &Admin,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, usage) = admin.get(&format!("/keys/{id}/usage")).await;
        if done(&usage) || Instant::now() > deadline {
            return usage;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Today's count of one outcome in a usage answer.
pub fn used(usage: &serde_json::Value, outcome: &str) -> u64 {
    usage["days"][0]["outcomes"][outcome].as_u64().unwrap_or(0)
}

/// Waits until no window of a minute or less ends within `margin` of now.
pub async fn away_from_window_edges(margin: Duration) {
    loop {
        let into_minute = tollgate::clock::now_ms().rem_euclid(60_000);
        if into_minute > 1_000 && 60_000 - into_minute > margin.as_millis() as i64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
