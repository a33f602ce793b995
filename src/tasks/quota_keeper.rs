//! Keeps the local limiter's daily counts in the store (restored at start, saved every
//! 5 s and on shutdown), writes back credit balances on the same beat, and forgets idle
//! callers.

use crate::clock;
use crate::lifecycle::Finalizer;
use crate::lifecycle::Readiness;
use crate::policy::rate_limit::{CallerKey, Limiter, DAY_MS};
use crate::store::sync::Syncer;
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each save is a write per active caller: on one shared core, saving every 2 s with
/// 10,000 busy keys doubled the single-connection p99 (see the README's performance notes).
const SAVE_EVERY: Duration = Duration::from_secs(5);
const SWEEP_EVERY: u32 = 15;

pub struct QuotaKeeper {
    pub limiter: Arc<Limiter>,
    pub syncer: Arc<Syncer>,
    pub readiness: Arc<Readiness>,
    /// Today's counts are loaded.
    restored: AtomicBool,
    finalizer: Mutex<Option<Finalizer>>,
}

impl QuotaKeeper {
    pub fn new(limiter: Arc<Limiter>, syncer: Arc<Syncer>, readiness: Arc<Readiness>) -> Self {
        QuotaKeeper {
            limiter,
            syncer,
            readiness,
            restored: AtomicBool::new(false),
            finalizer: Mutex::new(Some(Finalizer::register())),
        }
    }

    /// Loads today's persisted counts from `store` into the local limiter, and counts this
    /// component ready.
    pub async fn restore_from(&self, store: &Store) -> Result<(), StoreError> {
        if let Some(local) = self.limiter.persisted() {
            let now = clock::now_ms();
            let today = now - now.rem_euclid(DAY_MS as i64);
            let rows = tokio::time::timeout(self.syncer.deadline(), store.load_quotas(today))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable("loading quotas timed out".into()))
                })?;
            for (caller, count) in rows {
                if let Some(key) = CallerKey::parse(&caller) {
                    local.restore_day(key, today, count);
                }
            }
        }
        if !self.restored.swap(true, Ordering::AcqRel) {
            self.readiness.set_ready();
        }
        Ok(())
    }

    async fn save(&self) {
        let (Some(local), Some(store)) = (self.limiter.persisted(), self.syncer.store()) else {
            return;
        };
        let dirty = local.take_dirty_days();
        if dirty.is_empty() {
            return;
        }
        let saved = tokio::time::timeout(self.syncer.deadline(), store.save_quotas(&dirty)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!("saving daily quota counts failed; will retry");
            for (caller, day, count) in dirty {
                if let Some(key) = CallerKey::parse(&caller) {
                    local.restore_day(key, day, count);
                    local.mark_day_dirty(&caller);
                }
            }
        }
    }

    /// Loads today's counts once the store is reachable (unless a preload already did).
    async fn restore(&self, shutdown: &mut ShutdownWatch) {
        if self.restored.load(Ordering::Acquire) {
            return;
        }
        loop {
            if let Some(store) = self.syncer.store() {
                if self.restore_from(store).await.is_ok() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[async_trait]
impl BackgroundService for QuotaKeeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.restore(&mut shutdown).await;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SAVE_EVERY) => {}
                _ = shutdown.changed() => break,
            }
            self.save().await;
            super::credit_balances::write_back(&self.limiter, &self.syncer).await;
            ticks += 1;
            if ticks % SWEEP_EVERY == 0 || self.limiter.local().is_crowded() {
                self.limiter.local().sweep(clock::now_ms());
            }
        }
        for _ in 0..3000 {
            if crate::lifecycle::in_flight() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.save().await;
        super::credit_balances::write_back(&self.limiter, &self.syncer).await;
        if let Ok(mut finalizer) = self.finalizer.lock() {
            finalizer.take();
        }
    }
}
