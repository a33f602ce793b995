//! The usage writer: flushes the per-key counters and the analytics counts to the store
//! every [`FLUSH_EVERY`], and once more after the last request on shutdown; prunes
//! analytics past their retention once an hour.

use crate::analytics::Analytics;
use crate::store::sync::Syncer;
use crate::usage::{UsageRecorder, FLUSH_EVERY};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Flushes usage every [`FLUSH_EVERY`], and once more after the last request on shutdown.
pub struct UsageFlusher {
    pub recorder: Arc<UsageRecorder>,
    pub analytics: Arc<Analytics>,
    retention: Duration,
    pub syncer: Arc<Syncer>,
    /// When analytics were last pruned (Unix ms).
    pruned: AtomicI64,
    finalizer: Mutex<Option<crate::lifecycle::Finalizer>>,
}

impl UsageFlusher {
    pub fn new(
        recorder: Arc<UsageRecorder>,
        analytics: Arc<Analytics>,
        retention: Duration,
        syncer: Arc<Syncer>,
    ) -> Self {
        UsageFlusher {
            recorder,
            analytics,
            retention,
            syncer,
            pruned: AtomicI64::new(0),
            finalizer: Mutex::new(Some(crate::lifecycle::Finalizer::register())),
        }
    }

    async fn flush(&self, exact: bool) {
        let Some(store) = self.syncer.store() else {
            return;
        };
        self.recorder
            .flush(store, self.syncer.deadline(), exact)
            .await;
        let rows = self.analytics.drain();
        if !rows.is_empty() {
            let written =
                tokio::time::timeout(self.syncer.deadline(), store.add_analytics(&rows)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(rows = rows.len(), "writing analytics failed; will retry");
                self.analytics.restore(rows);
            }
        }
        let now = crate::clock::now_ms();
        if now - self.pruned.load(Ordering::Relaxed) >= PRUNE_EVERY_MS {
            self.pruned.store(now, Ordering::Relaxed);
            let before = now - self.retention.as_millis() as i64;
            if let Ok(Err(error)) =
                tokio::time::timeout(self.syncer.deadline(), store.prune_analytics(before)).await
            {
                tracing::warn!(%error, "pruning analytics failed; will retry");
            }
        }
    }
}

const PRUNE_EVERY_MS: i64 = 3_600_000;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for UsageFlusher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => self.flush(false).await,
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
        self.flush(true).await;
        if let Ok(mut finalizer) = self.finalizer.lock() {
            finalizer.take();
        }
    }
}
