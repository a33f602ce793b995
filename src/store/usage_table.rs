//! Usage counts by outcome, per UTC day and per UTC hour, and `last_used_at`, written in
//! batches.

use super::dialect::Dialect;
use super::records::UsageDay;
use super::{Store, StoreResult};
use crate::usage::Exceeded;
use sqlx::Row;
use std::collections::BTreeMap;

/// One batch of counts: `(key id, day, outcome, count)` and `(key id, last used ms)`, the
/// quotas that refused a key `(key id, day, quota)`, and the UTC hour (hours since the
/// epoch) its counts are attributed to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UsageBatch {
    pub counts: Vec<(String, i64, &'static str, i64)>,
    pub last_used: Vec<(String, i64)>,
    pub exceeded: Vec<(String, i64, Exceeded)>,
    pub hour: i64,
}

/// Hourly counts are kept this long (in hours).
pub const HOURLY_RETENTION: i64 = 90 * 24;

/// The last hour hourly rows were pruned in, so pruning costs one statement an hour.
static PRUNED_HOUR: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Requests of one key in one UTC hour, by outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageHour {
    /// The hour's start, RFC 3339.
    pub hour: String,
    pub outcomes: BTreeMap<String, i64>,
    pub total: i64,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.last_used.is_empty() && self.exceeded.is_empty()
    }
}

/// `($1, $2), ($3, $4), ...` for `rows` rows of `columns` parameters; plain `?` for
/// SQLite, which would otherwise look every numbered name up when binding.
fn placeholders(dialect: Dialect, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => out.push('?'),
                Dialect::Postgres => out.push_str(&format!("${}", row * columns + column + 1)),
            }
        }
        out.push(')');
    }
    out
}

impl Store {
    /// Adds a batch in one transaction; counts from every replica add up.
    pub async fn add_usage(&self, batch: &UsageBatch) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Keys and owners refused by a daily quota or out of credits announce it (once a
        // day), in this transaction: off the request path, as sure as the counts themselves.
        let over_quota = &batch.exceeded;
        if !over_quota.is_empty() {
            // Before any row is written, as every versioned write takes it.
            self.dialect.lock_writes(&mut tx).await?;
        }
        for chunk in batch.counts.chunks(self.dialect().rows_per_statement()) {
            let sql = format!(
                "INSERT INTO usage_daily (key_id, day, outcome, count) VALUES {} \
                 ON CONFLICT (key_id, day, outcome) DO UPDATE SET count = usage_daily.count + excluded.count",
                placeholders(self.dialect(), chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (key_id, day, outcome, count) in chunk {
                query = query
                    .bind(key_id.clone())
                    .bind(*day)
                    .bind(outcome.to_string())
                    .bind(*count);
            }
            query.execute(&mut *tx).await?;
            let sql = format!(
                "INSERT INTO usage_hourly (key_id, hour, outcome, count) VALUES {} \
                 ON CONFLICT (key_id, hour, outcome) DO UPDATE SET count = usage_hourly.count + excluded.count",
                placeholders(self.dialect(), chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (key_id, _, outcome, count) in chunk {
                query = query
                    .bind(key_id.clone())
                    .bind(batch.hour)
                    .bind(outcome.to_string())
                    .bind(*count);
            }
            query.execute(&mut *tx).await?;
        }
        let pruned = PRUNED_HOUR.load(std::sync::atomic::Ordering::Relaxed);
        if !batch.counts.is_empty() && pruned != batch.hour {
            sqlx::query("DELETE FROM usage_hourly WHERE hour < $1")
                .bind(batch.hour - HOURLY_RETENTION)
                .execute(&mut *tx)
                .await?;
            PRUNED_HOUR.store(batch.hour, std::sync::atomic::Ordering::Relaxed);
        }
        for chunk in batch.last_used.chunks(self.dialect().rows_per_statement()) {
            let sql = format!(
                "WITH used (id, at) AS (VALUES {}) \
                 UPDATE keys SET last_used_at = used.at FROM used \
                 WHERE keys.id = used.id AND (keys.last_used_at IS NULL OR keys.last_used_at < used.at)",
                placeholders(self.dialect(), chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (key_id, at) in chunk {
                query = query.bind(key_id.clone()).bind(*at);
            }
            query.execute(&mut *tx).await?;
        }
        let now = crate::clock::now_ms();
        for (key_id, day, quota) in over_quota {
            super::event_tables::quota_exceeded(&mut tx, key_id, *day, *quota, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Usage of one key by hour from `first_hour` on, newest hour first.
    pub async fn hourly_usage_of(
        &self,
        key_id: &str,
        first_hour: i64,
    ) -> StoreResult<Vec<UsageHour>> {
        let rows = sqlx::query(
            "SELECT hour, outcome, count FROM usage_hourly WHERE key_id = $1 AND hour >= $2",
        )
        .bind(key_id.to_string())
        .bind(first_hour)
        .fetch_all(&self.pool)
        .await?;
        let mut hours: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
        for row in rows {
            let hour: i64 = row.try_get("hour")?;
            let count: i64 = row.try_get("count")?;
            *hours
                .entry(hour)
                .or_default()
                .entry(row.try_get("outcome")?)
                .or_default() += count;
        }
        Ok(hours
            .into_iter()
            .rev()
            .map(|(hour, outcomes)| UsageHour {
                hour: crate::clock::rfc3339(hour * 3_600_000),
                total: outcomes.values().sum(),
                outcomes,
            })
            .collect())
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
        for chunk in counts.chunks(self.dialect().rows_per_statement()) {
            let sql = format!(
                "INSERT INTO quota_daily (caller, day, count) VALUES {} ON CONFLICT (caller, day) \
                 DO UPDATE SET count = CASE WHEN excluded.count > quota_daily.count THEN excluded.count \
                 ELSE quota_daily.count END",
                placeholders(self.dialect(), chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (caller, day, count) in chunk {
                query = query.bind(caller.clone()).bind(*day).bind(*count as i64);
            }
            query.execute(&mut *tx).await?;
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

#[cfg(test)]
mod tests {
    use super::{placeholders, Dialect};

    #[test]
    fn placeholders_number_every_parameter_once() {
        assert_eq!(placeholders(Dialect::Postgres, 1, 2), "($1, $2)");
        assert_eq!(
            placeholders(Dialect::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
