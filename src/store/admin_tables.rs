//! The audit log (written inside each change's transaction, with the events the change
//! announces) and the idempotency records of the admin API.

use super::records::{Actor, AuditEntry, Timestamp};
use super::statement::{to_json, Args};
use super::{Store, StoreError, StoreResult};
use sqlx::{Any, Row, Transaction};

/// What a stored idempotency record says about a repeated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// The key is new: the caller reserved it and must complete or release it.
    Reserved,
    /// The first request with this key is still being processed.
    InProgress,
    /// The first request finished; replay its answer (if the body matches).
    Done {
        request_hash: String,
        status: u16,
        body: String,
    },
}

/// Which audit entries a listing shows: each field left out matches everything; `from`
/// is inclusive and `to` exclusive (Unix milliseconds). `actor` is an actor's id or kind.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Store {
    /// Audit entries, newest first, older than the cursor id, that match `filter`.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut args = Args::default();
        let mut clauses = vec![format!("id < {}", args.int(before_id.unwrap_or(i64::MAX)))];
        if let Some(actor) = &filter.actor {
            // An actor's id (op_..., tok_...), or a kind (bootstrap, system).
            let value = args.text(actor.clone());
            clauses.push(format!("(actor_id = {value} OR actor_kind = {value})"));
        }
        for (column, value) in [("action", &filter.action), ("target", &filter.target)] {
            if let Some(value) = value {
                clauses.push(format!("{column} = {}", args.text(value.clone())));
            }
        }
        if let Some(from) = filter.from {
            clauses.push(format!("at >= {}", args.int(from)));
        }
        if let Some(to) = filter.to {
            clauses.push(format!("at < {}", args.int(to)));
        }
        let sql = format!(
            "SELECT id, at, actor, action, target, before, after FROM audit WHERE {} \
             ORDER BY id DESC LIMIT {}",
            clauses.join(" AND "),
            args.int(limit)
        );
        let rows = args.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: Timestamp(row.try_get("at")?),
                    actor: Actor::from_stored(&row.try_get::<String, _>("actor")?),
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    before: parse(row.try_get("before")?),
                    after: parse(row.try_get("after")?),
                })
            })
            .collect()
    }

    /// Reserves `key` for `scope`, or reports what an earlier request with it did.
    /// Records older than `expire_before` are forgotten.
    pub async fn reserve_idempotency(
        &self,
        key: &str,
        scope: &str,
        request_hash: &str,
        now: i64,
        expire_before: i64,
    ) -> StoreResult<Idempotent> {
        sqlx::query(
            "DELETE FROM idempotency WHERE idem_key = $1 AND scope = $2 AND created_at < $3",
        )
        .bind(key.to_string())
        .bind(scope.to_string())
        .bind(expire_before)
        .execute(&self.pool)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency (idem_key, scope, request_hash, status, body, created_at) \
             VALUES ($1, $2, $3, 0, NULL, $4) ON CONFLICT (idem_key, scope) DO NOTHING",
        )
        .bind(key.to_string())
        .bind(scope.to_string())
        .bind(request_hash.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Idempotent::Reserved);
        }
        let row = sqlx::query(
            "SELECT request_hash, status, body FROM idempotency WHERE idem_key = $1 AND scope = $2",
        )
        .bind(key.to_string())
        .bind(scope.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::Conflict)?;
        let status: i64 = row.try_get("status")?;
        if status == 0 {
            return Ok(Idempotent::InProgress);
        }
        Ok(Idempotent::Done {
            request_hash: row.try_get("request_hash")?,
            status: status as u16,
            body: row
                .try_get::<Option<String>, _>("body")?
                .unwrap_or_default(),
        })
    }

    pub async fn complete_idempotency(
        &self,
        key: &str,
        scope: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE idempotency SET status = $1, body = $2 WHERE idem_key = $3 AND scope = $4",
        )
        .bind(i64::from(status))
        .bind(body.to_string())
        .bind(key.to_string())
        .bind(scope.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a reservation whose request failed, so it can be retried.
    pub async fn release_idempotency(&self, key: &str, scope: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency WHERE idem_key = $1 AND scope = $2 AND status = 0")
            .bind(key.to_string())
            .bind(scope.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Writes one audit entry inside the transaction of the change it records.
pub(super) async fn audit(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    actor: &Actor,
    action: &str,
    target: &str,
    before: Option<String>,
    after: Option<String>,
) -> StoreResult<()> {
    let announced = crate::events::catalog::announced_by(action);
    // What the events carry: the record as the admin API shows it, after the change, or as
    // it was when the change removed it. Records serialise without their secrets.
    let data: Option<serde_json::Value> = (!announced.is_empty()).then(|| {
        after
            .as_deref()
            .or(before.as_deref())
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_else(|| serde_json::json!({"id": target}))
    });
    sqlx::query(
        "INSERT INTO audit (at, actor, action, target, before, after, actor_kind, actor_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(to_json(actor))
    .bind(action.to_string())
    .bind(target.to_string())
    .bind(before)
    .bind(after)
    .bind(actor.kind.clone())
    .bind(actor.id.clone())
    .execute(&mut **tx)
    .await?;
    if let Some(data) = data {
        for kind in announced {
            super::outbox::emit(tx, now, kind, &data, None).await?;
        }
    }
    Ok(())
}
