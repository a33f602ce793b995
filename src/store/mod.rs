//! The credential store: one implementation over sqlx's `Any` driver, with a [`Dialect`]
//! for what differs between the embedded SQLite file and a PostgreSQL shared by replicas.

mod admin_tables;
mod analytics_table;
mod changes;
mod dialect;
mod event_tables;
mod key_table;
mod keys;
mod oauth_tables;
mod operator_tables;
mod outbox;
mod owner_table;
pub mod records;
pub mod snapshot;
pub mod snapshot_file;
mod statement;
pub mod sync;
mod usage_table;

pub use admin_tables::{AuditFilter, Idempotent};
pub use analytics_table::{AnalyticsPoint, AnalyticsQuery};
pub use changes::{KeyChanges, OwnerChange};
pub use dialect::{Dialect, CHANGES_CHANNEL};
pub use event_tables::{
    Claimed, DeliveryRecord, DeliveryState, EventRecord, WebhookChange, WebhookRecord,
};
pub use keys::KeyFilter;
pub use oauth_tables::Redeemed;
pub use usage_table::{UsageBatch, UsageHour};

use crate::config::StoreUrl;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an I/O-level failure.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Another writer changed the record since it was read; read again and retry.
    #[error("the record changed concurrently")]
    Conflict,
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint failed.
    #[error("duplicate")]
    Duplicate,
    /// The change would leave no enabled owner.
    #[error("the last enabled owner")]
    LastOwner,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
            _ => StoreError::Unavailable(error.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects, creating the SQLite file and its folder when needed, and applies the
    /// versioned migrations.
    pub async fn open(url: &StoreUrl) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let (dialect, connect_url) = match url {
            StoreUrl::Sqlite(path) => {
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(folder)?;
                }
                (
                    Dialect::Sqlite,
                    format!("sqlite://{}?mode=rwc", path.display()),
                )
            }
            StoreUrl::Postgres(url) => (Dialect::Postgres, url.clone()),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(dialect.max_connections())
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    for statement in dialect.session_setup() {
                        sqlx::query(statement).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await?;
        dialect.migrator().run(&pool).await?;
        Ok(Store { pool, dialect })
    }

    /// Closes every connection (a store opened for a one-off job, such as a preload).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Starts a write: takes the write lock (so versions commit in order) and allocates
    /// the version this write will stamp on what it changes.
    async fn begin_write(&self, now: i64) -> StoreResult<(Transaction<'static, Any>, i64)> {
        let mut tx = self.pool.begin().await?;
        self.dialect.lock_writes(&mut tx).await?;
        let row: AnyRow = sqlx::query("INSERT INTO changes (at) VALUES ($1) RETURNING id")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let version: i64 = row.try_get(0)?;
        Ok((tx, version))
    }

    /// Commits a write, telling the other replicas (PostgreSQL: `NOTIFY` on commit) that
    /// change `version` exists.
    async fn finish_write(
        &self,
        mut tx: Transaction<'static, Any>,
        version: i64,
    ) -> StoreResult<()> {
        self.dialect.notify(&mut tx, version).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Records for unit tests elsewhere in the crate.
#[cfg(test)]
pub mod keys_for_tests {
    use super::records::{KeyRecord, KeyType, Secrets, Timestamp};
    use crate::auth::api_key::Digest;

    pub fn record(id: &str, digest: Digest) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            client_id: format!("cid_{id}"),
            name: id.into(),
            key_type: KeyType::FineGrained,
            permissions: vec![],
            role: None,
            environment: "live".into(),
            start: "tg_live_xxxx".into(),
            ip_allowlist: vec![],
            allow_infrastructure_ips: false,
            expires_at: None,
            created_at: Timestamp(0),
            rotated_at: None,
            revoked_at: None,
            last_used_at: None,
            rate_limit: None,
            metadata: serde_json::json!({}),
            client_cert_sha256: None,
            owner_id: None,
            credits: None,
            secrets: Secrets {
                digest,
                grace_digest: None,
                grace_until: None,
                version: 1,
            },
            version: 1,
        }
    }
}
