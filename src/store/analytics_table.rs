//! The analytics rows (SPEC 15): counts added in batches by every replica, pruned past
//! their retention, and read back summed by hour or day and grouped as asked.

use super::statement::Args;
use super::{Store, StoreResult};
use crate::analytics::AnalyticsRow;
use sqlx::Row;

/// What `GET /admin/v1/analytics` asks for. `from` is inclusive, `to` exclusive (Unix ms).
#[derive(Debug, Clone, Default)]
pub struct AnalyticsQuery {
    pub key_id: Option<String>,
    pub owner_id: Option<String>,
    pub from: i64,
    pub to: i64,
    /// Days (UTC) rather than hours.
    pub daily: bool,
    pub by_key: bool,
    pub by_route: bool,
    pub by_outcome: bool,
}

/// One summed count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsPoint {
    pub start: i64,
    pub key_id: Option<String>,
    pub route: Option<String>,
    pub outcome: Option<String>,
    pub count: i64,
}

impl Store {
    /// Adds `rows` to the stored counts, in one transaction.
    pub async fn add_analytics(&self, rows: &[AnalyticsRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(self.dialect().rows_per_statement()) {
            let mut args = Args::default();
            let values: Vec<String> = chunk
                .iter()
                .map(|row| {
                    format!(
                        "({}, {}, {}, {}, {}, {})",
                        args.int(row.hour),
                        args.text(row.key_id.clone()),
                        args.text(row.owner_id.clone()),
                        args.text(row.route.to_string()),
                        args.text(row.outcome.to_string()),
                        args.int(i64::try_from(row.count).unwrap_or(i64::MAX)),
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO analytics_hourly (hour, key_id, owner_id, route, outcome, count) \
                 VALUES {} ON CONFLICT (hour, key_id, owner_id, route, outcome) \
                 DO UPDATE SET count = analytics_hourly.count + excluded.count",
                values.join(", ")
            );
            args.bind(sqlx::query(&sql)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets rows of hours before `before`.
    pub async fn prune_analytics(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM analytics_hourly WHERE hour < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Counts summed by hour (or day) and the asked groups, oldest first.
    pub async fn query_analytics(
        &self,
        query: &AnalyticsQuery,
    ) -> StoreResult<Vec<AnalyticsPoint>> {
        let bucket: i64 = if query.daily { 86_400_000 } else { 3_600_000 };
        let mut args = Args::default();
        let mut clauses = vec![
            format!("hour >= {}", args.int(query.from)),
            format!("hour < {}", args.int(query.to)),
        ];
        if let Some(key_id) = &query.key_id {
            clauses.push(format!("key_id = {}", args.text(key_id.clone())));
        }
        if let Some(owner_id) = &query.owner_id {
            clauses.push(format!("owner_id = {}", args.text(owner_id.clone())));
        }
        let mut columns = vec![format!("(hour - (hour % {bucket})) AS start")];
        let mut groups = vec!["start".to_string()];
        for (wanted, column) in [
            (query.by_key, "key_id"),
            (query.by_route, "route"),
            (query.by_outcome, "outcome"),
        ] {
            if wanted {
                columns.push(column.to_string());
                groups.push(column.to_string());
            }
        }
        let sql = format!(
            "SELECT {}, CAST(SUM(count) AS BIGINT) AS total FROM analytics_hourly WHERE {} \
             GROUP BY {} ORDER BY {}",
            columns.join(", "),
            clauses.join(" AND "),
            groups.join(", "),
            groups.join(", "),
        );
        let rows = args.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AnalyticsPoint {
                    start: row.try_get("start")?,
                    key_id: query.by_key.then(|| row.try_get("key_id")).transpose()?,
                    route: query.by_route.then(|| row.try_get("route")).transpose()?,
                    outcome: query
                        .by_outcome
                        .then(|| row.try_get("outcome"))
                        .transpose()?,
                    count: row.try_get("total")?,
                })
            })
            .collect()
    }
}
