//! What differs between the two store backends: migrations, session setup, write locking.

use sqlx::migrate::Migrator;
use sqlx::{Any, Transaction};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL channel on which every committed change is announced.
pub const CHANGES_CHANNEL: &str = "tollgate_changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded single-process store.
    Sqlite,
    /// A server shared by several replicas.
    Postgres,
}

impl Dialect {
    pub fn migrator(self) -> &'static Migrator {
        match self {
            Dialect::Sqlite => &SQLITE,
            Dialect::Postgres => &POSTGRES,
        }
    }

    pub fn max_connections(self) -> u32 {
        match self {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 8,
        }
    }

    /// Statements run on every new connection.
    pub fn session_setup(self) -> &'static [&'static str] {
        match self {
            Dialect::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA busy_timeout = 5000",
            ],
            Dialect::Postgres => &["SET statement_timeout = 10000"],
        }
    }

    /// Queues a notification of `version` for the other replicas, delivered on commit.
    pub async fn notify(
        self,
        tx: &mut Transaction<'static, Any>,
        version: i64,
    ) -> Result<(), sqlx::Error> {
        if self == Dialect::Postgres {
            sqlx::query("SELECT count(*) FROM (SELECT pg_notify($1, $2)) AS sent")
                .bind(CHANGES_CHANNEL)
                .bind(version.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Serialises writers for the rest of the transaction, so change versions commit in
    /// the order they were allocated and an incremental sync never skips one. SQLite
    /// already allows one writer at a time: its first write takes the lock.
    pub async fn lock_writes(self, tx: &mut Transaction<'static, Any>) -> Result<(), sqlx::Error> {
        if self == Dialect::Postgres {
            sqlx::query("SELECT count(*) FROM (SELECT pg_advisory_xact_lock(7314529)) AS held")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}
