//! Owner rows (SPEC 15): the customers keys are issued to, whose `rate_limit` all their
//! keys share. Versioned writes, so the change feed carries them to the data plane.

use super::admin_tables::audit;
use super::dialect::BalanceTable;
use super::keys::{key_from_row, KEY_COLUMNS};
use super::records::{
    credits_columns, credits_from_columns, Actor, KeyRecord, OwnerRecord, RateLimitOverride,
    Timestamp,
};
use super::statement::to_json;
use super::{Store, StoreError, StoreResult};
use crate::policy::rate_limit::credits::Balance;
use crate::policy::rate_limit::CallerKey;
use sqlx::any::AnyRow;
use sqlx::Row;

pub(super) const OWNER_COLUMNS: &str =
    "id, name, external_id, rate_limit, metadata, created_at, updated_at, version, \
    credits_remaining, credits_refill, credits_period, credits_generation";

pub(super) fn owner_from_row(row: &AnyRow) -> StoreResult<OwnerRecord> {
    let rate_limit: Option<String> = row.try_get("rate_limit")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(OwnerRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        external_id: row.try_get("external_id")?,
        rate_limit: rate_limit
            .and_then(|text| serde_json::from_str::<RateLimitOverride>(&text).ok()),
        metadata: serde_json::from_str(&metadata).unwrap_or_else(|_| serde_json::json!({})),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        version: row.try_get("version")?,
        credits: credits_from_columns(
            row.try_get("credits_remaining")?,
            row.try_get::<Option<String>, _>("credits_refill")?
                .as_deref(),
            row.try_get("credits_period")?,
            row.try_get("credits_generation")?,
        ),
    })
}

impl Store {
    /// Inserts an owner and its audit entry in one transaction; a taken `external_id` is
    /// [`StoreError::Duplicate`].
    pub async fn insert_owner(
        &self,
        record: &OwnerRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<OwnerRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut record = record.clone();
        record.version = version;
        let credits = credits_columns(record.credits.as_ref());
        sqlx::query(&format!(
            "INSERT INTO owners ({OWNER_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(record.id.clone())
        .bind(record.name.clone())
        .bind(record.external_id.clone())
        .bind(record.rate_limit.map(|r| to_json(&r)))
        .bind(to_json(&record.metadata))
        .bind(record.created_at.0)
        .bind(record.updated_at.0)
        .bind(version)
        .bind(credits.0)
        .bind(credits.1)
        .bind(credits.2)
        .bind(credits.3)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "owner.create",
            &record.id,
            None,
            Some(to_json(&record)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(record)
    }

    pub async fn get_owner(&self, id: &str) -> StoreResult<OwnerRecord> {
        let row = sqlx::query(&format!("SELECT {OWNER_COLUMNS} FROM owners WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        owner_from_row(&row)
    }

    /// Owners newest first, after the `(created_at, id)` cursor; `external_id` finds one.
    pub async fn list_owners(
        &self,
        external_id: Option<&str>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<OwnerRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {OWNER_COLUMNS} FROM owners \
             WHERE (created_at < $1 OR (created_at = $1 AND id < $2)) \
             AND ($3 = '' OR external_id = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(created)
        .bind(id)
        .bind(external_id.unwrap_or("").to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(owner_from_row).collect()
    }

    /// Replaces an owner if it is still as `before` was ([`StoreError::Conflict`]
    /// otherwise), with its audit entry.
    pub async fn replace_owner(
        &self,
        before: &OwnerRecord,
        after: &OwnerRecord,
        action: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<OwnerRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut after = after.clone();
        after.version = version;
        let credits = credits_columns(after.credits.as_ref());
        let updated = sqlx::query(
            "UPDATE owners SET name = $1, external_id = $2, rate_limit = $3, metadata = $4, \
             updated_at = $5, version = $6, credits_remaining = $7, credits_refill = $8, \
             credits_period = $9, credits_generation = $10 WHERE id = $11 AND version = $12",
        )
        .bind(after.name.clone())
        .bind(after.external_id.clone())
        .bind(after.rate_limit.map(|r| to_json(&r)))
        .bind(to_json(&after.metadata))
        .bind(after.updated_at.0)
        .bind(version)
        .bind(credits.0)
        .bind(credits.1)
        .bind(credits.2)
        .bind(credits.3)
        .bind(after.id.clone())
        .bind(before.version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        audit(
            &mut tx,
            now,
            actor,
            action,
            &after.id,
            Some(to_json(before)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(after)
    }

    /// An owner's keys, newest first, after the `(created_at, id)` cursor.
    pub async fn owner_keys(
        &self,
        owner_id: &str,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<KeyRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE owner_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(owner_id.to_string())
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Writes back balances the data plane spent from, in one versioned change (so every
    /// replica's snapshot, which Redis is rebuilt from, follows: for a key, through the
    /// change feed's balances, see `KeyChanges::balances`). A balance an operator changed
    /// meanwhile (another generation) is left as the operator set it.
    pub async fn save_balances(
        &self,
        balances: &[(CallerKey, Balance)],
        now: i64,
    ) -> StoreResult<()> {
        if balances.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::new();
        let mut owners = Vec::new();
        for (caller, balance) in balances {
            let (rows, id) = match caller {
                CallerKey::Key(id) => (&mut keys, id),
                CallerKey::Owner(id) => (&mut owners, id),
                _ => continue,
            };
            rows.push(serde_json::json!({
                "id": &*id.as_str(),
                "remaining": i64::try_from(balance.remaining).unwrap_or(i64::MAX),
                "period": balance.period,
                "generation": balance.generation,
            }));
        }
        let (mut tx, version) = self.begin_write(now).await?;
        for (table, rows) in [(BalanceTable::Keys, keys), (BalanceTable::Owners, owners)] {
            if rows.is_empty() {
                continue;
            }
            sqlx::query(self.dialect().save_balances_sql(table))
                .bind(version)
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(&mut *tx)
                .await?;
        }
        self.finish_write(tx, version).await?;
        Ok(())
    }
}
