//! `/admin/v1/policy` and `/admin/v1/audit`.

use super::principal::Principal;
use super::retry::until_committed;
use super::{encode_cursor, respond, AdminError, AdminState, Answer, ListParams};
use crate::config::parse_duration;
use crate::store::records::{Actor, Policy};
use crate::store::{AuditFilter, StoreError};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn show(State(state): State<Arc<AdminState>>) -> Response {
    respond(
        state
            .policy()
            .await
            .map(|(policy, _)| (StatusCode::OK, json!(policy))),
    )
}

/// Fields left out keep their current value; `max_key_lifetime: null` removes the limit.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyInput {
    #[serde(default, deserialize_with = "super::not_null")]
    block_legacy_keys: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    max_key_lifetime: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(deserializer).map(Some)
}

pub async fn replace(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Response {
    respond(replace_policy(&state, &principal.actor, &body).await)
}

async fn replace_policy(state: &AdminState, actor: &Actor, body: &Bytes) -> Answer {
    let input: PolicyInput = super::parse_change(body)?;
    let lifetime = match &input.max_key_lifetime {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => {
            let duration = parse_duration(text)
                .map_err(|e| AdminError::InvalidRequest(format!("max_key_lifetime: {e}")))?;
            if duration.is_zero() {
                return Err(AdminError::InvalidRequest(
                    "max_key_lifetime must be longer than zero".into(),
                ));
            }
            Some(Some(duration))
        }
        Some(_) => {
            return Err(AdminError::InvalidRequest(
                "max_key_lifetime must be a duration string such as \"90d\", or null".into(),
            ))
        }
    };
    let store = state.store()?;
    let block_legacy_keys = input.block_legacy_keys;
    until_committed(state.syncer.deadline(), || async move {
        let (current, version) = state.policy().await?;
        let next = Policy {
            block_legacy_keys: block_legacy_keys.unwrap_or(current.block_legacy_keys),
            max_key_lifetime: lifetime.unwrap_or(current.max_key_lifetime),
        };
        let written = tokio::time::timeout(
            state.syncer.deadline(),
            store.replace_policy((current, version), next, actor, state.now()),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())));
        match written {
            Ok(_) => {
                state.refresh().await;
                Ok(Some((StatusCode::OK, json!(next))))
            }
            Err(StoreError::Conflict) => Ok(None),
            Err(error) => {
                state.syncer.store_failed();
                Err(error.into())
            }
        }
    })
    .await
}

/// The filters of `GET /audit`.
#[derive(Debug, serde::Deserialize)]
pub struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, AdminError> {
    value
        .map(|text| {
            crate::clock::parse_rfc3339(text).ok_or_else(|| {
                AdminError::InvalidRequest(format!("{name} \"{text}\" is not an RFC 3339 time"))
            })
        })
        .transpose()
}

pub async fn audit(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
    Query(filters): Query<AuditParams>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let before = params
            .cursor()?
            .map(|cursor| {
                cursor.parse::<i64>().map_err(|_| {
                    AdminError::InvalidRequest("cursor is not one this API returned".into())
                })
            })
            .transpose()?;
        let filter = AuditFilter {
            from: time_param("from", filters.from.as_deref())?,
            to: time_param("to", filters.to.as_deref())?,
            actor: filters.actor,
            action: filters.action,
            target: filters.target,
        };
        let store = state.store()?;
        let mut entries = state
            .call(store.list_audit(&filter, before, limit + 1))
            .await?;
        let next_cursor = if entries.len() as i64 > limit {
            entries.truncate(limit as usize);
            entries
                .last()
                .map(|last| encode_cursor(&last.id.to_string()))
        } else {
            None
        };
        Ok((
            StatusCode::OK,
            json!({"data": entries, "next_cursor": next_cursor}),
        ))
    };
    respond(answer.await)
}
