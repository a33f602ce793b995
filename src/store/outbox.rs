//! The outbox: an event written inside the transaction of the change it describes, with
//! one pending delivery for every webhook endpoint whose filter takes it.

use super::statement::to_json;
use super::StoreResult;
use crate::auth::base62;
use crate::clock::rfc3339;
use crate::events::catalog;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};

/// Writes an event to the outbox inside `tx`, with a pending delivery for every
/// endpoint that takes it (or for `only`, whatever its filter: a test event). Returns the
/// event's id.
pub(super) async fn emit(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    kind: &str,
    data: &Value,
    only: Option<&str>,
) -> StoreResult<String> {
    let id = format!("evt_{}", base62::random(24));
    let body = to_json(&serde_json::json!({
        "type": kind,
        "timestamp": rfc3339(now),
        "data": data,
    }));
    let row = sqlx::query(
        "INSERT INTO events (id, type, at, body) VALUES ($1, $2, $3, $4) RETURNING seq",
    )
    .bind(id.clone())
    .bind(kind.to_string())
    .bind(now)
    .bind(body)
    .fetch_one(&mut **tx)
    .await?;
    let seq: i64 = row.try_get(0)?;
    // A paused endpoint gets its deliveries too; they wait, pending, until it is enabled.
    let endpoints = sqlx::query("SELECT id, events FROM webhook_endpoints")
        .fetch_all(&mut **tx)
        .await?;
    for endpoint in &endpoints {
        let endpoint_id: String = endpoint.try_get("id")?;
        let wanted = match only {
            Some(only) => only == endpoint_id,
            None => {
                let filter: Vec<String> =
                    serde_json::from_str(&endpoint.try_get::<String, _>("events")?)
                        .unwrap_or_default();
                catalog::takes(&filter, kind)
            }
        };
        if wanted {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, endpoint_id, event_seq, attempts, \
                 next_attempt_at, state, created_at) VALUES ($1, $2, $3, 0, $4, 'pending', $4)",
            )
            .bind(format!("dlv_{}", base62::random(24)))
            .bind(endpoint_id)
            .bind(seq)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(id)
}

/// An event written once per `(subject, mark)`, inside a transaction that holds the write
/// lock: whether it was written now.
pub(super) async fn emit_once_in(
    tx: &mut Transaction<'static, Any>,
    subject: &str,
    mark: &str,
    kind: &str,
    data: &Value,
    now: i64,
) -> StoreResult<bool> {
    let marked = sqlx::query(
        "INSERT INTO event_marks (subject, mark) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(subject.to_string())
    .bind(mark.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if marked == 0 {
        return Ok(false);
    }
    emit(tx, now, kind, data, None).await?;
    Ok(true)
}
