//! The usage writer: flushes the per-key counters to the store every [`FLUSH_EVERY`], and
//! once more after the last request on shutdown.

use crate::store::sync::Syncer;
use crate::usage::{UsageRecorder, FLUSH_EVERY};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Flushes usage every [`FLUSH_EVERY`], and once more after the last request on shutdown.
pub struct UsageFlusher {
    pub recorder: Arc<UsageRecorder>,
    pub syncer: Arc<Syncer>,
    finalizer: Mutex<Option<crate::lifecycle::Finalizer>>,
}

impl UsageFlusher {
    pub fn new(recorder: Arc<UsageRecorder>, syncer: Arc<Syncer>) -> Self {
        UsageFlusher {
            recorder,
            syncer,
            finalizer: Mutex::new(Some(crate::lifecycle::Finalizer::register())),
        }
    }

    async fn flush(&self, exact: bool) {
        if let Some(store) = self.syncer.store() {
            self.recorder
                .flush(store, self.syncer.deadline(), exact)
                .await;
        }
    }
}

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
