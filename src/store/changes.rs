//! The change feed: everything written after version N, read in one pass, which
//! snapshots are built from incrementally.

use super::keys::{digest_of, key_from_row, policy_from_row, KeyPage, KEY_COLUMNS};
use super::records::{credits_from_columns, KeyRecord, Policy, RateLimitOverride};
use super::{Store, StoreResult};
use crate::auth::api_key::Digest;
use crate::policy::rate_limit::credits::Credits;
use sqlx::Row;

/// Everything that changed after a version, up to `version`.
#[derive(Debug, Default)]
pub struct KeyChanges {
    pub version: i64,
    pub keys: Vec<KeyRecord>,
    /// Digests of secrets replaced by rotation, with their key id.
    pub retired: Vec<(Digest, String)>,
    pub policy: Option<Policy>,
    pub clients: Vec<AppChange>,
    /// `(user id, disabled)`.
    pub users: Vec<(String, bool)>,
    pub revoked_grants: Vec<String>,
    pub owners: Vec<OwnerChange>,
    /// Keys whose balance alone was written back (by the data plane), with that balance.
    /// A key in `keys` as well holds the same balance there, or a later one.
    pub balances: Vec<(String, Credits)>,
}

/// What the data plane needs of an owner that changed: the limits its keys share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChange {
    pub id: String,
    pub rate_limit: Option<RateLimitOverride>,
    pub credits: Option<Credits>,
}

/// What the data plane needs of an OAuth app that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChange {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub deleted: bool,
}

impl KeyChanges {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.retired.is_empty()
            && self.policy.is_none()
            && self.clients.is_empty()
            && self.users.is_empty()
            && self.revoked_grants.is_empty()
            && self.owners.is_empty()
            && self.balances.is_empty()
    }
}

impl Store {
    /// Every key, retired digest and policy written after `since`.
    /// The latest committed change version.
    pub async fn latest_version(&self) -> StoreResult<i64> {
        let upto: Option<i64> = sqlx::query("SELECT MAX(id) FROM changes")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(upto.unwrap_or(0))
    }

    /// One page of the keys written up to `upto`, in `(version, id)` order after `after`:
    /// a full load reads the table this way, so it never holds every row at once.
    pub async fn key_page(
        &self,
        upto: i64,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<KeyPage> {
        let (version, id) = after.unwrap_or((i64::MIN, String::new()));
        let text: Option<String> = sqlx::query(self.dialect().key_page_sql())
            .bind(upto)
            .bind(version)
            .bind(id)
            .bind(limit)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(KeyPage(text))
    }

    /// When change `version` was made: with its id, what tells this store from another
    /// (a snapshot file names both). `None` when there is no such change.
    pub async fn change_at(&self, version: i64) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT at FROM changes WHERE id = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// How many keys the store holds (to size a full load).
    pub async fn key_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM keys")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn changes_since(&self, since: i64) -> StoreResult<KeyChanges> {
        self.changes_between(since, None, true).await
    }

    /// Everything but keys after `since` and up to `upto` (the rest of a full load).
    pub async fn other_changes(&self, since: i64, upto: i64) -> StoreResult<KeyChanges> {
        self.changes_between(since, Some(upto), false).await
    }

    async fn changes_between(
        &self,
        since: i64,
        upto: Option<i64>,
        with_keys: bool,
    ) -> StoreResult<KeyChanges> {
        let mut conn = self.pool.acquire().await?;
        let upto = match upto {
            Some(upto) => upto,
            None => {
                let latest: Option<i64> = sqlx::query("SELECT MAX(id) FROM changes")
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)?;
                latest.unwrap_or(0)
            }
        };
        if upto <= since {
            return Ok(KeyChanges {
                version: since,
                ..KeyChanges::default()
            });
        }
        let keys = if with_keys {
            let rows = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM keys WHERE version > $1 AND version <= $2"
            ))
            .bind(since)
            .bind(upto)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter()
                .map(key_from_row)
                .collect::<StoreResult<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let mut balances = Vec::new();
        if with_keys {
            let rows = sqlx::query(
                "SELECT id, credits_remaining, credits_refill, credits_period, credits_generation \
                 FROM keys WHERE credits_version > $1 AND credits_version <= $2",
            )
            .bind(since)
            .bind(upto)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let credits = credits_from_columns(
                    row.try_get(1)?,
                    row.try_get::<Option<String>, _>(2)?.as_deref(),
                    row.try_get(3)?,
                    row.try_get(4)?,
                );
                if let Some(credits) = credits {
                    balances.push((row.try_get(0)?, credits));
                }
            }
        }
        let rows = sqlx::query(
            "SELECT digest, key_id FROM retired_digests WHERE version > $1 AND version <= $2",
        )
        .bind(since)
        .bind(upto)
        .fetch_all(&mut *conn)
        .await?;
        let mut retired = Vec::with_capacity(rows.len());
        for row in rows {
            retired.push((digest_of(row.try_get(0)?)?, row.try_get(1)?));
        }
        let policy = sqlx::query(
            "SELECT block_legacy_keys, max_key_lifetime_ms, version FROM policy \
             WHERE id = 1 AND version > $1 AND version <= $2",
        )
        .bind(since)
        .bind(upto)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| policy_from_row(&row))
        .transpose()?;
        let rows = sqlx::query(
            "SELECT client_id, scopes, deleted_at FROM oauth_clients WHERE version > $1 AND version <= $2",
        )
        .bind(since)
        .bind(upto)
        .fetch_all(&mut *conn)
        .await?;
        let mut clients = Vec::with_capacity(rows.len());
        for row in rows {
            clients.push(AppChange {
                client_id: row.try_get(0)?,
                scopes: serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default(),
                deleted: row.try_get::<Option<i64>, _>(2)?.is_some(),
            });
        }
        let rows =
            sqlx::query("SELECT id, disabled FROM users WHERE version > $1 AND version <= $2")
                .bind(since)
                .bind(upto)
                .fetch_all(&mut *conn)
                .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            users.push((row.try_get(0)?, row.try_get::<i64, _>(1)? != 0));
        }
        let rows =
            sqlx::query("SELECT grant_id FROM revoked_grants WHERE version > $1 AND version <= $2")
                .bind(since)
                .bind(upto)
                .fetch_all(&mut *conn)
                .await?;
        let revoked_grants = rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        let rows = sqlx::query(
            "SELECT id, rate_limit, credits_remaining, credits_refill, credits_period, \
                 credits_generation FROM owners WHERE version > $1 AND version <= $2",
        )
        .bind(since)
        .bind(upto)
        .fetch_all(&mut *conn)
        .await?;
        let mut owners = Vec::with_capacity(rows.len());
        for row in rows {
            let rate_limit: Option<String> = row.try_get(1)?;
            owners.push(OwnerChange {
                id: row.try_get(0)?,
                rate_limit: rate_limit.and_then(|text| serde_json::from_str(&text).ok()),
                credits: credits_from_columns(
                    row.try_get(2)?,
                    row.try_get::<Option<String>, _>(3)?.as_deref(),
                    row.try_get(4)?,
                    row.try_get(5)?,
                ),
            });
        }
        Ok(KeyChanges {
            version: upto,
            keys,
            retired,
            policy,
            clients,
            users,
            revoked_grants,
            owners,
            balances,
        })
    }
}
