//! `/admin/v1/keys`: create, list, show, update, rotate, revoke and usage.

use super::idempotency::idempotent;
use super::key_rules::{parse_patch, CreateKey, KeyChange, RotateKey};
use super::principal::Principal;
use super::retry::{committed, until_committed};
use super::{page, parse_body, respond, AdminError, AdminState, Answer, ListParams};
use crate::auth::api_key::MintedKey;
use crate::store::records::{Actor, KeyRecord, KeyStatus, KeyType, Policy};
use crate::store::KeyFilter;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};
use std::sync::Arc;

/// The record, with the secret when one was just minted (shown once).
fn shown(record: &KeyRecord, minted: Option<MintedKey>) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    if let (Some(minted), Some(object)) = (minted, value.as_object_mut()) {
        object.insert("key".into(), Value::String(minted.secret));
    }
    value
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /keys".into(), &body, || async {
        let input: CreateKey = parse_body(&body)?;
        let (policy, _) = state.policy().await?;
        let now = state.now();
        let change = state.rules.create(input, &policy, now)?;
        if let Some(owner) = &change.record.owner_id {
            super::owners::must_exist(&state, owner).await?;
        }
        let store = state.store()?;
        let saved = state
            .call(store.insert_key(&change.record, &principal.actor, now))
            .await?;
        state.refresh().await;
        Ok((StatusCode::CREATED, shown(&saved, change.minted)))
    })
    .await
}

/// `status` and `type` of `GET /keys`.
#[derive(Debug, serde::Deserialize)]
pub struct KeyListFilter {
    status: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
    Query(filter): Query<KeyListFilter>,
) -> Response {
    respond(list_keys(&state, params, filter).await)
}

async fn list_keys(state: &AdminState, params: ListParams, filter: KeyListFilter) -> Answer {
    let limit = params.limit()?;
    let after = params.after()?;
    let status = filter
        .status
        .as_deref()
        .map(|text| {
            KeyStatus::parse(text).ok_or_else(|| {
                AdminError::InvalidRequest(format!(
                    "status must be active, expiring, expired or revoked, not \"{text}\""
                ))
            })
        })
        .transpose()?;
    let key_type = filter
        .key_type
        .as_deref()
        .map(|text| {
            KeyType::parse(text).ok_or_else(|| {
                AdminError::InvalidRequest(format!(
                    "type must be fine_grained or legacy, not \"{text}\""
                ))
            })
        })
        .transpose()?;
    let filter = KeyFilter {
        status,
        key_type,
        name: filter.name.as_deref(),
        now: state.now(),
    };
    let store = state.store()?;
    let mut keys = state
        .call(store.list_keys(filter, after, limit + 1))
        .await?;
    let next_cursor = page(&mut keys, limit, |key| (key.created_at.0, &key.id));
    let data: Vec<Value> = keys.iter().map(|key| shown(key, None)).collect();
    Ok((
        StatusCode::OK,
        json!({"data": data, "next_cursor": next_cursor}),
    ))
}

pub(super) async fn find(state: &AdminState, id: &str) -> Result<KeyRecord, AdminError> {
    let store = state.store()?;
    match state.call(store.get_key(id)).await {
        Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("key")),
        other => other,
    }
}

pub async fn show(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    respond(
        find(&state, &id)
            .await
            .map(|key| (StatusCode::OK, shown(&key, None))),
    )
}

/// Reads, changes and writes a key, retrying when another writer got there first.
async fn change_key(
    state: &AdminState,
    actor: &Actor,
    id: &str,
    action: &str,
    change: impl Fn(&KeyRecord, &Policy, i64) -> Result<KeyChange, AdminError>,
) -> Answer {
    let store = state.store()?;
    let change = &change;
    until_committed(state.syncer.deadline(), || async move {
        let current = find(state, id).await?;
        let (policy, _) = state.policy().await?;
        let now = state.now();
        let next = change(&current, &policy, now)?;
        let written = state
            .call(store.replace_key(&current, &next.record, action, actor, &next.retired, now))
            .await
            .map_err(|error| match error {
                AdminError::NotFound(_) => AdminError::NotFound("key"),
                other => other,
            });
        let Some(saved) = committed(written)? else {
            return Ok(None);
        };
        state.refresh().await;
        Ok(Some((StatusCode::OK, shown(&saved, next.minted))))
    })
    .await
}

pub async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer = async {
        if let Some(owner) = parse_patch(&body)?.new_owner() {
            super::owners::must_exist(&state, owner).await?;
        }
        change_key(
            &state,
            &principal.actor,
            &id,
            "key.update",
            |current, _, now| state.rules.patch(current, parse_patch(&body)?, now),
        )
        .await
    };
    respond(answer.await)
}

pub async fn rotate(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    idempotent(
        &state,
        &headers,
        format!("POST /keys/{id}/rotate"),
        &body,
        || async {
            let _: RotateKey = parse_body(&body)?;
            change_key(
                &state,
                &principal.actor,
                &id,
                "key.rotate",
                |current, policy, now| {
                    let input: RotateKey = parse_body(&body)?;
                    state.rules.rotate(current, input, policy, now)
                },
            )
            .await
        },
    )
    .await
}

/// Revocation takes no fields: an empty body or `{}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeKey {}

pub async fn revoke(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    idempotent(
        &state,
        &headers,
        format!("POST /keys/{id}/revoke"),
        &body,
        || async {
            let _: RevokeKey = parse_body(&body)?;
            change_key(
                &state,
                &principal.actor,
                &id,
                "key.revoke",
                |current, _, now| state.rules.revoke(current, now),
            )
            .await
        },
    )
    .await
}

#[derive(Debug, serde::Deserialize)]
pub struct UsageParams {
    days: Option<String>,
    hours: Option<String>,
}

/// A number query parameter within `range`, or `default` when left out.
fn bounded(
    name: &str,
    value: Option<&str>,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, AdminError> {
    match value {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                AdminError::InvalidRequest(format!(
                    "{name} must be a number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

pub async fn usage(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Query(params): Query<UsageParams>,
) -> Response {
    let answer = async {
        let days = bounded("days", params.days.as_deref(), 1..=366, 30)?;
        let hours = bounded("hours", params.hours.as_deref(), 1..=720, 48)?;
        let key = find(&state, &id).await?;
        let store = state.store()?;
        let first_day = crate::clock::day_of(state.now()) - days + 1;
        let by_day = state.call(store.usage_of(&id, first_day)).await?;
        let first_hour = state.now().div_euclid(3_600_000) - hours + 1;
        let by_hour = state.call(store.hourly_usage_of(&id, first_hour)).await?;
        Ok((
            StatusCode::OK,
            json!({"key_id": key.id, "last_used_at": key.last_used_at, "days": by_day, "hours": by_hour}),
        ))
    };
    respond(answer.await)
}
