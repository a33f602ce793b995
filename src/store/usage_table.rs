//! Per-day usage counts by outcome, and `last_used_at`, written in batches.

use super::records::UsageDay;
use super::{Store, StoreResult};
use sqlx::Row;
use std::collections::BTreeMap;

/// One batch of counts: `(key id, day, outcome, count)` and `(key id, last used ms)`.
#[derive(Debug, Default)]
pub struct UsageBatch {
    pub counts: Vec<(String, i64, &'static str, i64)>,
    pub last_used: Vec<(String, i64)>,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.last_used.is_empty()
    }
}

impl Store {
    /// Adds a batch in one transaction; counts from every replica add up.
    pub async fn add_usage(&self, batch: &UsageBatch) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (key_id, day, outcome, count) in &batch.counts {
            sqlx::query(
                "INSERT INTO usage_daily (key_id, day, outcome, count) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key_id, day, outcome) DO UPDATE SET count = usage_daily.count + excluded.count",
            )
            .bind(key_id.clone())
            .bind(*day)
            .bind(outcome.to_string())
            .bind(*count)
            .execute(&mut *tx)
            .await?;
        }
        for (key_id, at) in &batch.last_used {
            sqlx::query(
                "UPDATE keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(*at)
            .bind(key_id.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Usage of one key from `first_day` on, newest day first.
    pub async fn usage_of(&self, key_id: &str, first_day: i64) -> StoreResult<Vec<UsageDay>> {
        let rows = sqlx::query(
            "SELECT day, outcome, count FROM usage_daily WHERE key_id = $1 AND day >= $2 ORDER BY day DESC",
        )
        .bind(key_id.to_string())
        .bind(first_day)
        .fetch_all(&self.pool)
        .await?;
        let mut days: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
        for row in rows {
            let day: i64 = row.try_get("day")?;
            let count: i64 = row.try_get("count")?;
            *days
                .entry(day)
                .or_default()
                .entry(row.try_get("outcome")?)
                .or_default() += count;
        }
        Ok(days
            .into_iter()
            .rev()
            .map(|(day, outcomes)| UsageDay {
                date: crate::clock::date_of_day(day),
                total: outcomes.values().sum(),
                outcomes,
            })
            .collect())
    }
}

impl Store {
    /// Saves daily quota counts; a count never goes down.
    pub async fn save_quotas(&self, counts: &[(String, i64, u64)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (caller, day, count) in counts {
            sqlx::query(
                "INSERT INTO quota_daily (caller, day, count) VALUES ($1, $2, $3) ON CONFLICT (caller, day) \
                 DO UPDATE SET count = CASE WHEN excluded.count > quota_daily.count THEN excluded.count \
                 ELSE quota_daily.count END",
            )
            .bind(caller.clone())
            .bind(*day)
            .bind(*count as i64)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM quota_daily WHERE day < $1")
            .bind(counts.iter().map(|(_, day, _)| *day).min().unwrap_or(0) - 86_400_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The daily counts of the day starting at `day`.
    pub async fn load_quotas(&self, day: i64) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query("SELECT caller, count FROM quota_daily WHERE day = $1")
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("caller")?,
                    row.try_get::<i64, _>("count")?.max(0) as u64,
                ))
            })
            .collect()
    }
}
