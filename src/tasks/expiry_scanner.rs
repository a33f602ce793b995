//! The expiry scanner: every [`SCAN_EVERY`], writes `key.expiring` (7 days and 1 day
//! ahead) and `key.expired` events for the keys that are due, each once per key, however
//! many replicas scan and however often they restart (the store remembers each as a mark).

use crate::clock;
use crate::store::sync::Syncer;
use std::sync::Arc;
use std::time::Duration;

pub const SCAN_EVERY: Duration = Duration::from_secs(10);

pub struct ExpiryScanner {
    pub syncer: Arc<Syncer>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ExpiryScanner {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            wait = SCAN_EVERY;
            let Some(store) = self.syncer.store() else {
                continue;
            };
            match tokio::time::timeout(self.syncer.deadline(), store.scan_expiry(clock::now_ms()))
                .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(sent)) => tracing::info!(events = sent, "expiry events written"),
                Ok(Err(error)) => tracing::warn!(%error, "expiry scan failed; will retry"),
                Err(_) => tracing::warn!("expiry scan timed out; will retry"),
            }
        }
    }
}
