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

/// The tables that hold credit balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceTable {
    Keys,
    Owners,
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

    /// One page of keys for a full load, as a single JSON document: an array with one
    /// array per key, in the column order `keys::PageRow` reads. A million keys read row
    /// by row cost SQLite a copy of every value, freed on another thread under a contended
    /// lock (most of a cold start, measured with perf); a page aggregated by the database
    /// costs one value. The JSON columns travel as strings, parsed leniently in Rust as
    /// everywhere else: one malformed row must not stop every key from loading.
    /// Binds: the newest version, the `(version, id)` to start after, the page size.
    pub fn key_page_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT json_group_array(json_array(id, client_id, key_type, permissions, \
                 role, environment, hex(digest), hex(grace_digest), grace_until, secret_version, \
                 ip_allowlist, allow_infrastructure_ips, expires_at, revoked_at, rate_limit, \
                 version, rotated_at, client_cert_sha256, owner_id, credits_remaining, \
                 credits_refill, credits_period, credits_generation)) \
                 FROM (SELECT * FROM keys WHERE version <= $1 \
                 AND (version > $2 OR (version = $2 AND id > $3)) ORDER BY version, id LIMIT $4)"
            }
            Dialect::Postgres => {
                "SELECT CAST(json_agg(json_build_array(id, client_id, key_type, \
                 permissions, role, environment, encode(digest, 'hex'), \
                 encode(grace_digest, 'hex'), grace_until, secret_version, \
                 ip_allowlist, allow_infrastructure_ips, expires_at, revoked_at, rate_limit, \
                 version, rotated_at, client_cert_sha256, owner_id, credits_remaining, \
                 credits_refill, credits_period, credits_generation) ORDER BY version, id) AS text) \
                 FROM (SELECT * FROM keys WHERE version <= $1 \
                 AND (version > $2 OR (version = $2 AND id > $3)) ORDER BY version, id LIMIT $4) AS page"
            }
        }
    }

    /// Rows per multi-row statement. SQLite looks each parameter's name up in a list, and
    /// sqlx asks it for every name, so a statement costs the square of its parameters
    /// (a 200-row batch of counts took more of the process than the SQL did, measured with
    /// perf): small statements there. PostgreSQL pays a round trip per statement instead.
    pub fn rows_per_statement(self) -> usize {
        match self {
            Dialect::Sqlite => 32,
            Dialect::Postgres => 200,
        }
    }

    /// Writes back many balances of `table` (`keys` or `owners`) in one statement, from one
    /// JSON array of `{"id", "remaining", "period", "generation"}`: a row whose generation
    /// moved on (an operator set it) is left alone. A key's balance is stamped with the
    /// change in `credits_version` (the change feed carries it alone); an owner's, a row
    /// as narrow, in `version`. Row by row, ten thousand balances every
    /// few seconds cost the process more than its requests did (measured with perf: each
    /// statement a round trip to SQLite's worker thread).
    /// Binds: the change's version, the JSON.
    pub fn save_balances_sql(self, table: BalanceTable) -> &'static str {
        match (self, table) {
            (Dialect::Sqlite, BalanceTable::Keys) => {
                "UPDATE keys SET credits_remaining = json_extract(b.value, '$.remaining'), \
                 credits_period = json_extract(b.value, '$.period'), credits_version = $1 \
                 FROM json_each($2) AS b WHERE keys.id = json_extract(b.value, '$.id') \
                 AND keys.credits_generation = json_extract(b.value, '$.generation')"
            }
            (Dialect::Sqlite, BalanceTable::Owners) => {
                "UPDATE owners SET credits_remaining = json_extract(b.value, '$.remaining'), \
                 credits_period = json_extract(b.value, '$.period'), version = $1 \
                 FROM json_each($2) AS b WHERE owners.id = json_extract(b.value, '$.id') \
                 AND owners.credits_generation = json_extract(b.value, '$.generation')"
            }
            (Dialect::Postgres, BalanceTable::Keys) => {
                "UPDATE keys SET credits_remaining = b.remaining, credits_period = b.period, \
                 credits_version = $1 FROM jsonb_to_recordset(CAST($2 AS jsonb)) \
                 AS b(id text, remaining bigint, period bigint, generation bigint) \
                 WHERE keys.id = b.id AND keys.credits_generation = b.generation"
            }
            (Dialect::Postgres, BalanceTable::Owners) => {
                "UPDATE owners SET credits_remaining = b.remaining, credits_period = b.period, \
                 version = $1 FROM jsonb_to_recordset(CAST($2 AS jsonb)) \
                 AS b(id text, remaining bigint, period bigint, generation bigint) \
                 WHERE owners.id = b.id AND owners.credits_generation = b.generation"
            }
        }
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
