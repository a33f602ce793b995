//! Usage counting off the request path: per-key atomic counters, flushed to the store in
//! batches. A restart loses at most one batch interval; a clean stop loses nothing.

use crate::clock;
use crate::store::Store;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How often counts are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The outcome of a request made with a known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    KeyRevoked,
    KeyExpired,
    IpNotAllowed,
    InsufficientPermission,
    RateLimited,
    QuotaExceeded,
}

const OUTCOMES: [Outcome; 7] = [
    Outcome::Allowed,
    Outcome::KeyRevoked,
    Outcome::KeyExpired,
    Outcome::IpNotAllowed,
    Outcome::InsufficientPermission,
    Outcome::RateLimited,
    Outcome::QuotaExceeded,
];

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::KeyRevoked => "key_revoked",
            Outcome::KeyExpired => "key_expired",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::InsufficientPermission => "insufficient_permission",
            Outcome::RateLimited => "rate_limited",
            Outcome::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// The counters of one key since the last flush.
#[derive(Debug)]
pub struct UsageCell {
    key_id: Arc<str>,
    counts: [AtomicU64; OUTCOMES.len()],
    last_used: AtomicI64,
}

/// Where a credential's cell lives: created on first use, carried to the credential's
/// next version when the snapshot changes, so no count is lost by a sync.
#[derive(Debug, Default)]
pub struct UsageSlot(OnceLock<Arc<UsageCell>>);

impl UsageSlot {
    /// A slot already holding `previous`'s cell, if it had one.
    pub fn carried_from(previous: Option<&UsageSlot>) -> UsageSlot {
        let slot = UsageSlot::default();
        if let Some(cell) = previous.and_then(|p| p.0.get()) {
            let _ = slot.0.set(cell.clone());
        }
        slot
    }
}

/// Every cell that has counted something, for the flusher.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    cells: Mutex<Vec<Arc<UsageCell>>>,
}

impl UsageRecorder {
    pub fn record(&self, slot: &UsageSlot, key_id: &Arc<str>, outcome: Outcome, now: i64) {
        let cell = slot.0.get_or_init(|| {
            let cell = Arc::new(UsageCell {
                key_id: key_id.clone(),
                counts: Default::default(),
                last_used: AtomicI64::new(0),
            });
            if let Ok(mut cells) = self.cells.lock() {
                cells.push(cell.clone());
            }
            cell
        });
        cell.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Allowed {
            cell.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// Takes every count accumulated so far, attributing it to the UTC day of `now`.
    pub fn drain(&self, now: i64) -> crate::store::UsageBatch {
        let day = clock::day_of(now);
        let cells = self.cells.lock().map(|c| c.clone()).unwrap_or_default();
        // One row per key and outcome, even if a key ever had two cells: a multi-row
        // upsert may not touch one row twice.
        let mut counts: std::collections::BTreeMap<(Arc<str>, &'static str), i64> =
            Default::default();
        let mut last_used: std::collections::BTreeMap<Arc<str>, i64> = Default::default();
        for cell in cells {
            for (index, outcome) in OUTCOMES.iter().enumerate() {
                let count = cell.counts[index].swap(0, Ordering::Relaxed);
                if count > 0 {
                    *counts
                        .entry((cell.key_id.clone(), outcome.as_str()))
                        .or_default() += count as i64;
                }
            }
            let used = cell.last_used.swap(0, Ordering::Relaxed);
            if used > 0 {
                let at = last_used.entry(cell.key_id.clone()).or_default();
                *at = (*at).max(used);
            }
        }
        crate::store::UsageBatch {
            counts: counts
                .into_iter()
                .map(|((key_id, outcome), count)| (key_id.to_string(), day, outcome, count))
                .collect(),
            last_used: last_used
                .into_iter()
                .map(|(key_id, at)| (key_id.to_string(), at))
                .collect(),
        }
    }

    /// Puts counts back after a failed write, so the next flush retries them.
    fn restore(&self, batch: crate::store::UsageBatch) {
        let Ok(cells) = self.cells.lock() else { return };
        for (key_id, _, outcome, count) in batch.counts {
            let index = OUTCOMES.iter().position(|o| o.as_str() == outcome);
            if let (Some(cell), Some(index)) = (cells.iter().find(|c| *c.key_id == *key_id), index)
            {
                cell.counts[index].fetch_add(count as u64, Ordering::Relaxed);
            }
        }
        for (key_id, at) in batch.last_used {
            if let Some(cell) = cells.iter().find(|c| *c.key_id == *key_id) {
                cell.last_used.fetch_max(at, Ordering::Relaxed);
            }
        }
    }

    /// Writes what accumulated within `deadline`; on failure or timeout keeps it for the
    /// next attempt (a write cut off after its commit may then count twice, never zero times).
    pub async fn flush(&self, store: &Store, deadline: Duration) {
        let batch = self.drain(clock::now_ms());
        if batch.is_empty() {
            return;
        }
        match tokio::time::timeout(deadline, store.add_usage(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "usage flush failed; will retry");
                self.restore(batch);
            }
            Err(_) => {
                tracing::warn!("usage flush timed out; will retry");
                self.restore(batch);
            }
        }
    }
}

/// Flushes usage every [`FLUSH_EVERY`], and once more after the last request on shutdown.
pub struct UsageFlusher {
    pub recorder: Arc<UsageRecorder>,
    pub syncer: Arc<crate::store::sync::Syncer>,
    finalizer: Mutex<Option<crate::lifecycle::Finalizer>>,
}

impl UsageFlusher {
    pub fn new(recorder: Arc<UsageRecorder>, syncer: Arc<crate::store::sync::Syncer>) -> Self {
        UsageFlusher {
            recorder,
            syncer,
            finalizer: Mutex::new(Some(crate::lifecycle::Finalizer::register())),
        }
    }

    async fn flush(&self) {
        if let Some(store) = self.syncer.store() {
            self.recorder.flush(store, self.syncer.deadline()).await;
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for UsageFlusher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => self.flush().await,
                _ = shutdown.changed() => break,
            }
        }
        // Requests still draining may count; the last flush comes after them.
        for _ in 0..3000 {
            if crate::lifecycle::in_flight() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.flush().await;
        if let Ok(mut finalizer) = self.finalizer.lock() {
            finalizer.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_credential_being_replaced() {
        let recorder = UsageRecorder::default();
        let id: Arc<str> = Arc::from("key_1");
        let first = UsageSlot::default();
        recorder.record(&first, &id, Outcome::Allowed, 1_000);
        let second = UsageSlot::carried_from(Some(&first));
        recorder.record(&second, &id, Outcome::Allowed, 2_000);
        recorder.record(&second, &id, Outcome::IpNotAllowed, 2_500);
        let batch = recorder.drain(86_400_000 * 3 + 5);
        assert_eq!(
            batch.counts,
            [
                ("key_1".to_string(), 3, "allowed", 2),
                ("key_1".to_string(), 3, "ip_not_allowed", 1)
            ]
        );
        assert_eq!(batch.last_used, [("key_1".to_string(), 2_000)]);
        assert!(recorder.drain(0).is_empty());
    }
}
