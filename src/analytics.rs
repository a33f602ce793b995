//! Request counts per key × hour × route × outcome, with the key's owner (SPEC 15): one
//! in-memory increment on the request path, drained in batches for the writer, which adds
//! them to the store's rows (so every replica's counts add up, each request once).

use crate::short_id::ShortId;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const HOUR_MS: i64 = 3_600_000;

/// One counter: whose, when, where and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bucket {
    hour: i64,
    key: ShortId,
    owner: Option<ShortId>,
    /// The route's position in the table.
    route: usize,
    /// `allowed` or the refusal's code.
    outcome: &'static str,
}

/// One row for the store: counts to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsRow {
    pub hour: i64,
    pub key_id: String,
    /// Empty when the key has no owner.
    pub owner_id: String,
    pub route: Arc<str>,
    pub outcome: &'static str,
    pub count: u64,
}

/// The counters since the last drain.
pub struct Analytics {
    counts: DashMap<Bucket, AtomicU64, foldhash::fast::RandomState>,
    /// Route names by position.
    routes: Vec<Arc<str>>,
}

impl Analytics {
    pub fn new(routes: Vec<Arc<str>>) -> Self {
        Analytics {
            counts: DashMap::default(),
            routes,
        }
    }

    /// Counts one request of `key` (of `owner`) to route `route`, ended as `outcome`.
    pub fn record(
        &self,
        now: i64,
        key: &ShortId,
        owner: Option<&ShortId>,
        route: usize,
        outcome: &'static str,
    ) {
        let bucket = Bucket {
            hour: now - now.rem_euclid(HOUR_MS),
            key: key.clone(),
            owner: owner.cloned(),
            route,
            outcome,
        };
        if let Some(count) = self.counts.get(&bucket) {
            count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts
            .entry(bucket)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes every count so far. Each shard is emptied under its lock, so an increment
    /// lands either in this batch or in the next one, never in neither.
    pub fn drain(&self) -> Vec<AnalyticsRow> {
        let mut rows = Vec::new();
        self.counts.retain(|bucket, count| {
            let count = count.swap(0, Ordering::Relaxed);
            if count > 0 {
                rows.push(AnalyticsRow {
                    hour: bucket.hour,
                    key_id: bucket.key.as_str().to_string(),
                    owner_id: bucket
                        .owner
                        .as_ref()
                        .map_or_else(String::new, |o| o.as_str().to_string()),
                    route: self
                        .routes
                        .get(bucket.route)
                        .cloned()
                        .unwrap_or_else(|| Arc::from("-")),
                    outcome: bucket.outcome,
                    count,
                });
            }
            false
        });
        rows
    }

    /// Puts back rows a failed write did not store, so they are written with the next.
    pub fn restore(&self, rows: Vec<AnalyticsRow>) {
        for row in rows {
            let route = self
                .routes
                .iter()
                .position(|name| *name == row.route)
                .unwrap_or(usize::MAX);
            let bucket = Bucket {
                hour: row.hour,
                key: ShortId::new(&row.key_id),
                owner: (!row.owner_id.is_empty()).then(|| ShortId::new(&row.owner_id)),
                route,
                outcome: row.outcome,
            };
            self.counts
                .entry(bucket)
                .or_default()
                .fetch_add(row.count, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_drain_once_and_come_back_after_a_failed_write() {
        let analytics = Analytics::new(vec![Arc::from("accounts"), Arc::from("reports")]);
        let key = ShortId::new("key_1");
        let owner = ShortId::new("own_1");
        for _ in 0..3 {
            analytics.record(HOUR_MS + 5, &key, Some(&owner), 0, "allowed");
        }
        analytics.record(HOUR_MS + 6, &key, Some(&owner), 1, "rate_limited");
        analytics.record(2 * HOUR_MS, &key, None, 0, "allowed");
        let mut rows = analytics.drain();
        rows.sort_by_key(|r| (r.hour, r.route.to_string(), r.outcome));
        let summary: Vec<(i64, &str, &str, &str, u64)> = rows
            .iter()
            .map(|r| (r.hour, &*r.route, r.outcome, r.owner_id.as_str(), r.count))
            .collect();
        assert_eq!(
            summary,
            [
                (HOUR_MS, "accounts", "allowed", "own_1", 3),
                (HOUR_MS, "reports", "rate_limited", "own_1", 1),
                (2 * HOUR_MS, "accounts", "allowed", "", 1),
            ]
        );
        assert!(analytics.drain().is_empty());
        analytics.restore(rows.clone());
        let mut again = analytics.drain();
        again.sort_by_key(|r| (r.hour, r.route.to_string(), r.outcome));
        assert_eq!(again, rows);
    }
}
