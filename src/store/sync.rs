//! Keeps the snapshot current: a full load at start, then incremental syncs every
//! `sync_interval` and right after each admin write. Serving continues from the last
//! snapshot while the store is unreachable.

use super::records::{KeyType, Policy};
use super::snapshot::{Snapshot, SnapshotBuilder};
use super::snapshot_file::{FileWriter, Fingerprint, SnapshotFile};
use super::{Store, StoreError};
use crate::clock;
use crate::config::{Config, PolicyConfig, StoreUrl};
use crate::lifecycle::Readiness;
use arc_swap::{ArcSwap, Guard};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The data plane's handle: the current snapshot and how fresh it is.
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    /// When the last sync succeeded (Unix ms); 0 before the first.
    last_success: AtomicI64,
    max_staleness_ms: i64,
}

impl SnapshotHandle {
    pub fn new(policy: Policy, max_staleness: Duration) -> Self {
        SnapshotHandle {
            current: ArcSwap::from_pointee(Snapshot::empty(policy)),
            last_success: AtomicI64::new(0),
            max_staleness_ms: max_staleness.as_millis() as i64,
        }
    }

    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Past `max_staleness` without a successful sync (or before the first), a credential
    /// missing from the snapshot cannot be called unknown.
    pub fn is_stale(&self, now: i64) -> bool {
        let last = self.last_success.load(Ordering::Relaxed);
        last == 0 || now - last > self.max_staleness_ms
    }

    pub fn age_seconds(&self, now: i64) -> Option<f64> {
        let last = self.last_success.load(Ordering::Relaxed);
        (last > 0).then(|| (now - last).max(0) as f64 / 1000.0)
    }
}

pub fn policy_from_config(config: &PolicyConfig) -> Policy {
    Policy {
        block_legacy_keys: config.block_legacy_keys,
        max_key_lifetime: config.max_key_lifetime,
    }
}

/// Metrics about the snapshot and the store.
#[derive(Clone)]
pub struct SyncMetrics {
    syncs: IntCounterVec,
    store_up: IntGauge,
    age: prometheus::Gauge,
    credentials: IntGaugeVec,
}

impl SyncMetrics {
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        let syncs = IntCounterVec::new(
            Opts::new(
                "tollgate_snapshot_syncs_total",
                "Snapshot syncs with the store, by result.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let store_up = IntGauge::new(
            "tollgate_store_up",
            "1 when the last store operation succeeded.",
        )
        .expect("static metric definition");
        let age = prometheus::Gauge::new(
            "tollgate_snapshot_age_seconds",
            "Seconds since the snapshot last synced successfully with the store.",
        )
        .expect("static metric definition");
        let credentials = IntGaugeVec::new(
            Opts::new(
                "tollgate_credentials",
                "Active (not revoked) keys in the snapshot, by type.",
            ),
            &["type"],
        )
        .expect("static metric definition");
        for result in ["ok", "error"] {
            syncs.with_label_values(&[result]);
        }
        metrics.register(Box::new(syncs.clone()));
        metrics.register(Box::new(store_up.clone()));
        metrics.register(Box::new(age.clone()));
        metrics.register(Box::new(credentials.clone()));
        SyncMetrics {
            syncs,
            store_up,
            age,
            credentials,
        }
    }
}

/// Owns the store connection and the snapshot's updates.
pub struct Syncer {
    url: StoreUrl,
    store: OnceLock<Store>,
    pub snapshot: Arc<SnapshotHandle>,
    builder: tokio::sync::Mutex<SnapshotBuilder>,
    seed_policy: Policy,
    interval: Duration,
    readiness: Arc<Readiness>,
    /// The first snapshot is loaded.
    loaded: std::sync::atomic::AtomicBool,
    metrics: SyncMetrics,
    /// Where the local snapshot file is kept, if anywhere.
    file: Option<PathBuf>,
    /// Rung when the file is older than the snapshot: it is rewritten in the background.
    file_stale: tokio::sync::Notify,
}

/// Rows per page, reading the store or the snapshot file.
const PAGE: usize = 20_000;

impl Syncer {
    pub fn new(config: &Config, readiness: Arc<Readiness>, metrics: SyncMetrics) -> Self {
        let policy = policy_from_config(&config.policy);
        Syncer {
            url: config.store.url.clone(),
            store: OnceLock::new(),
            snapshot: Arc::new(SnapshotHandle::new(policy, config.store.max_staleness)),
            builder: tokio::sync::Mutex::new(SnapshotBuilder::new(config)),
            seed_policy: policy,
            interval: config.store.sync_interval,
            readiness,
            loaded: std::sync::atomic::AtomicBool::new(false),
            metrics,
            file: config.store.snapshot_file.clone(),
            file_stale: tokio::sync::Notify::new(),
        }
    }

    /// The store, once connected.
    pub fn store(&self) -> Option<&Store> {
        self.store.get()
    }

    /// Waits, at most `within`, for the store to be open. A process that has just taken
    /// the sockets over opens its own connection a moment after: its first admin requests
    /// wait for it instead of answering 503.
    pub async fn wait_open(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.store.get().is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A store operation must not hang the caller on a frozen database.
    pub fn deadline(&self) -> Duration {
        (self.interval * 2).max(Duration::from_secs(5))
    }

    /// Applies every change since the current snapshot. Serialised, so concurrent callers
    /// never swap in an older snapshot over a newer one.
    pub async fn sync_now(&self) -> Result<(), StoreError> {
        let store = self
            .store()
            .ok_or_else(|| StoreError::Unavailable("not connected yet".into()))?;
        self.sync_with(store).await
    }

    /// Loads the first snapshot (seeding the policy on a new store) from `store`, which may
    /// be a connection of its own: an upgrading process loads before it takes the sockets.
    pub async fn load_first(&self, store: &Store) -> Result<(), StoreError> {
        let seeded = tokio::time::timeout(
            self.deadline(),
            store.seed_policy(self.seed_policy, clock::now_ms()),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("seeding timed out".into())));
        if let Err(error) = seeded {
            self.metrics.store_up.set(0);
            return Err(error);
        }
        let began = std::time::Instant::now();
        let from_file = self.start_from_file(store).await?;
        if !from_file {
            self.sync_with(store).await?;
        }
        if !self.loaded.swap(true, Ordering::AcqRel) {
            self.readiness.set_ready();
            let snapshot = self.snapshot.load();
            tracing::info!(
                version = snapshot.version,
                keys = snapshot.active_keys(KeyType::FineGrained)
                    + snapshot.active_keys(KeyType::Legacy),
                millis = began.elapsed().as_millis() as u64,
                from = if from_file { "file" } else { "store" },
                "snapshot loaded"
            );
        }
        Ok(())
    }

    /// Builds the first snapshot from the local file when there is a usable one, and
    /// catches it up with everything the store changed since, before anything is served
    /// from it: a key revoked while the process was down is refused from the first
    /// request. `Ok(false)` when there is no usable file (a full load follows); a store
    /// error during the catch-up is an error, as it would be for a full load.
    async fn start_from_file(&self, store: &Store) -> Result<bool, StoreError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        if self.snapshot.load().version != 0 {
            return Ok(false);
        }
        let file = match SnapshotFile::read(path) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(false),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "the snapshot file is not used; loading from the store");
                return Ok(false);
            }
        };
        let at = self
            .timed(store.change_at(file.fingerprint.version))
            .await?;
        if at != Some(file.fingerprint.change_at) {
            tracing::warn!(
                file = %path.display(),
                version = file.fingerprint.version,
                "the snapshot file was written from another store (or one rebuilt since); loading from the store"
            );
            return Ok(false);
        }
        let mut builder = self.builder.lock().await;
        let mut load = builder.start_full(usize::try_from(file.keys).unwrap_or(0));
        let rest = match file.decode(|rows| builder.add_keys(&mut load, rows)) {
            Ok(rest) => rest,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "the snapshot file is not used; loading from the store");
                return Ok(false);
            }
        };
        let loaded = builder.finish_full(load, self.snapshot.load().policy, rest);
        let changes = self.timed(store.changes_since(loaded.version)).await;
        let caught_up = changes
            .as_ref()
            .map_or(0, |changes| changes.keys.len() + changes.retired.len());
        self.settle(changes.map(|changes| Some(builder.apply(&loaded, changes))))?;
        if caught_up > 0 {
            self.file_stale.notify_one();
        }
        Ok(true)
    }

    /// Rewrites the snapshot file from the store whenever it falls behind (after a start
    /// from it that had changes to catch up on), without touching the snapshot served.
    async fn keep_file(&self, mut shutdown: ShutdownWatch) {
        let Some(path) = &self.file else {
            return;
        };
        loop {
            tokio::select! {
                _ = self.file_stale.notified() => {}
                _ = shutdown.changed() => return,
            }
            let Some(store) = self.store() else { continue };
            if let Err(error) = self.write_file(store, path).await {
                tracing::warn!(file = %path.display(), %error, "cannot rewrite the snapshot file");
            }
        }
    }

    /// Reads every key from the store into a new snapshot file.
    async fn write_file(&self, store: &Store, path: &std::path::Path) -> Result<(), StoreError> {
        let upto = self.timed(store.latest_version()).await?;
        let mut writer = Some(FileWriter::create(path).map_err(file_failed)?);
        let mut after = None;
        loop {
            let page = self
                .timed(store.key_page(upto, after.take(), PAGE as i64))
                .await?;
            let rows = page.rows()?;
            write_rows(&mut writer, path, &rows);
            after = next_page(&rows);
            if after.is_none() {
                break;
            }
        }
        let rest = self.timed(store.other_changes(0, upto)).await?;
        self.finish_file(store, writer, upto, &rest, path).await;
        Ok(())
    }

    /// Puts a file written up to `upto` in place, or says why not.
    async fn finish_file(
        &self,
        store: &Store,
        writer: Option<FileWriter>,
        upto: i64,
        rest: &super::changes::KeyChanges,
        path: &std::path::Path,
    ) {
        let Some(writer) = writer else { return };
        let change_at = match self.timed(store.change_at(upto)).await {
            Ok(Some(at)) => at,
            _ => {
                writer.abandon();
                return;
            }
        };
        let fingerprint = Fingerprint {
            version: upto,
            change_at,
        };
        let keys = writer.keys();
        match writer.finish(fingerprint, rest) {
            Ok(()) => {
                tracing::info!(file = %path.display(), version = upto, keys, "snapshot file written")
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot write the snapshot file")
            }
        }
    }

    async fn timed<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.deadline(), operation)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("load timed out".into())))
    }

    async fn sync_with(&self, store: &Store) -> Result<(), StoreError> {
        let mut builder = self.builder.lock().await;
        let current = self.snapshot.load_full();
        let result = if current.version == 0 {
            self.load_full(store, &mut builder, current.policy)
                .await
                .map(Some)
        } else {
            self.timed(store.changes_since(current.version))
                .await
                .map(|changes| (!changes.is_empty()).then(|| builder.apply(&current, changes)))
        };
        self.settle(result)
    }

    /// Swaps in the snapshot a sync produced (`None`: nothing changed) and records how the
    /// sync went.
    fn settle(&self, result: Result<Option<Snapshot>, StoreError>) -> Result<(), StoreError> {
        match result {
            Ok(next) => {
                if let Some(next) = next {
                    self.snapshot.current.store(Arc::new(next));
                }
                self.snapshot
                    .last_success
                    .store(clock::now_ms(), Ordering::Relaxed);
                self.metrics.syncs.with_label_values(&["ok"]).inc();
                self.metrics.store_up.set(1);
                Ok(())
            }
            Err(error) => {
                self.metrics.syncs.with_label_values(&["error"]).inc();
                self.metrics.store_up.set(0);
                Err(error)
            }
        }
    }

    /// Reads every key page by page (each page under the deadline, so a large store loads
    /// however long it takes while a dead one still fails fast), then the rest. The rows
    /// also go to a new snapshot file, for the next start.
    async fn load_full(
        &self,
        store: &Store,
        builder: &mut SnapshotBuilder,
        policy: Policy,
    ) -> Result<Snapshot, StoreError> {
        let upto = self.timed(store.latest_version()).await?;
        let expected = self.timed(store.key_count()).await?;
        let mut load = builder.start_full(usize::try_from(expected).unwrap_or(0));
        let path = self.file.as_deref();
        let mut writer = path.and_then(|path| match FileWriter::create(path) {
            Ok(writer) => Some(writer),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot write the snapshot file");
                None
            }
        });
        let fetch =
            |after: Option<(i64, String)>| self.timed(store.key_page(upto, after, PAGE as i64));
        // While one page is turned into credentials, the store reads the next.
        let mut page = fetch(None).await?;
        loop {
            let rows = page.rows()?;
            if let Some(path) = path {
                write_rows(&mut writer, path, &rows);
            }
            let Some(after) = next_page(&rows) else {
                builder.add_keys(&mut load, &rows);
                break;
            };
            let (fetched, ()) = tokio::join!(fetch(Some(after)), async {
                builder.add_keys(&mut load, &rows);
            });
            drop(rows);
            page = fetched?;
        }
        let rest = self.timed(store.other_changes(0, upto)).await?;
        if let Some(path) = path {
            self.finish_file(store, writer, upto, &rest, path).await;
        }
        Ok(builder.finish_full(load, policy, rest))
    }

    /// Records a failed store operation seen elsewhere (an admin write).
    pub fn store_failed(&self) {
        self.metrics.store_up.set(0);
    }

    fn update_gauges(&self) {
        let snapshot = self.snapshot.load();
        let credentials = &self.metrics.credentials;
        credentials
            .with_label_values(&["fine_grained"])
            .set(snapshot.active_keys(KeyType::FineGrained) as i64);
        credentials
            .with_label_values(&["legacy"])
            .set(snapshot.active_keys(KeyType::Legacy) as i64);
        if let Some(age) = self.snapshot.age_seconds(clock::now_ms()) {
            self.metrics.age.set(age);
        }
    }

    /// Connects (retrying), seeds the policy, loads the first snapshot, then keeps it in
    /// sync until shutdown.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        let mut attempt = 0u32;
        while self.store.get().is_none() {
            match Store::open(&self.url).await {
                Ok(store) => {
                    let _ = self.store.set(store);
                }
                Err(error) => {
                    attempt += 1;
                    self.metrics.store_up.set(0);
                    tracing::warn!(%error, attempt, "cannot open the store; retrying");
                    let pause = Duration::from_millis(200 * u64::from(attempt.min(10)));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        loop {
            if !self.loaded.load(Ordering::Acquire) {
                if let Some(store) = self.store() {
                    if let Err(error) = self.load_first(store).await {
                        tracing::warn!(%error, "cannot load the first snapshot; retrying");
                    }
                }
            } else if let Err(error) = self.sync_now().await {
                tracing::warn!(%error, "snapshot sync failed; serving from the last snapshot");
            }
            self.update_gauges();
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Syncer {
    /// With PostgreSQL, applies changes as soon as another replica announces them
    /// (LISTEN/NOTIFY); the periodic sync stays the floor when a notification is missed.
    pub async fn listen(&self, mut shutdown: ShutdownWatch) {
        let StoreUrl::Postgres(url) = &self.url else {
            return;
        };
        loop {
            if let Ok(mut listener) = sqlx::postgres::PgListener::connect(url).await {
                if listener.listen(super::CHANGES_CHANNEL).await.is_ok() {
                    // Catch up on whatever was announced while nobody listened.
                    let _ = self.sync_now().await;
                    loop {
                        tokio::select! {
                            received = listener.recv() => match received {
                                Ok(_) => {
                                    if let Err(error) = self.sync_now().await {
                                        tracing::warn!(%error, "sync after a change notification failed");
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "change notifications interrupted; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Runs the syncer as a pingora background service.
pub struct SyncService(pub Arc<Syncer>);

#[async_trait]
impl BackgroundService for SyncService {
    async fn start(&self, shutdown: ShutdownWatch) {
        tokio::join!(
            self.0.run(shutdown.clone()),
            self.0.listen(shutdown.clone()),
            self.0.keep_file(shutdown)
        );
    }
}

fn file_failed(error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot write the snapshot file: {error}"))
}

/// Adds a page to the file being written; on an error the file is given up (the load
/// itself goes on).
fn write_rows(
    writer: &mut Option<FileWriter>,
    path: &std::path::Path,
    rows: &[super::records::KeyRow<'_>],
) {
    if let Some(file) = writer {
        if let Err(error) = file.add_keys(rows) {
            tracing::warn!(file = %path.display(), %error, "cannot write the snapshot file");
            if let Some(file) = writer.take() {
                file.abandon();
            }
        }
    }
}

/// Where the page after `rows` starts, or `None` when `rows` was the last page.
fn next_page(rows: &[super::records::KeyRow<'_>]) -> Option<(i64, String)> {
    match rows.last() {
        Some(last) if rows.len() == PAGE => Some((last.version, last.id.to_string())),
        _ => None,
    }
}
