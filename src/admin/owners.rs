//! `/admin/v1/owners`: the customers keys are issued to (SPEC 15), whose `rate_limit` all
//! their keys share. Create, list, show, update, and an owner's keys.

use super::idempotency::idempotent;
use super::key_rules::{
    check_credits, check_metadata, check_name, check_rate_limit, patched_credits, CreditsInput,
};
use super::principal::Principal;
use super::retry::until_committed;
use super::{page, parse_body, parse_change, respond, AdminError, AdminState, ListParams};
use crate::auth::base62;
use crate::store::records::{OwnerRecord, RateLimitOverride, Timestamp};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const MAX_EXTERNAL_ID: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOwner {
    name: String,
    #[serde(default, deserialize_with = "super::not_null")]
    external_id: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    rate_limit: Option<RateLimitOverride>,
    #[serde(default, deserialize_with = "super::not_null")]
    metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "super::not_null")]
    credits: Option<CreditsInput>,
}

/// `PATCH /owners/{id}`: `external_id: null` and `rate_limit: null` clear them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchOwner {
    #[serde(default, deserialize_with = "super::not_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "super::key_rules::present")]
    external_id: Option<Value>,
    #[serde(default, deserialize_with = "super::key_rules::present")]
    rate_limit: Option<Value>,
    #[serde(default, deserialize_with = "super::not_null")]
    metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "super::key_rules::present")]
    credits: Option<Value>,
}

/// `?external_id=` of `GET /owners`.
#[derive(Debug, Deserialize)]
pub struct OwnerListFilter {
    external_id: Option<String>,
}

fn check_external_id(text: &str) -> Result<String, AdminError> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_EXTERNAL_ID || text.chars().any(char::is_control) {
        return Err(AdminError::InvalidRequest(format!(
            "external_id must be 1 to {MAX_EXTERNAL_ID} printable characters"
        )));
    }
    Ok(text.to_string())
}

fn taken(error: AdminError) -> AdminError {
    match error {
        AdminError::Conflict => {
            AdminError::Taken("another owner already has this external_id".into())
        }
        other => other,
    }
}

/// Refuses a key change that names an owner that does not exist.
pub async fn must_exist(state: &AdminState, owner_id: &str) -> Result<(), AdminError> {
    match find(state, owner_id).await {
        Err(AdminError::NotFound(_)) => Err(AdminError::InvalidRequest(format!(
            "owner_id \"{owner_id}\" names no owner"
        ))),
        other => other.map(|_| ()),
    }
}

pub(super) async fn find(state: &AdminState, id: &str) -> Result<OwnerRecord, AdminError> {
    let store = state.store()?;
    match state.call(store.get_owner(id)).await {
        Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("owner")),
        other => other,
    }
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /owners".into(), &body, || async {
        let input: CreateOwner = parse_body(&body)?;
        let now = state.now();
        let record = OwnerRecord {
            id: format!("own_{}", base62::random(20)),
            name: check_name(&input.name)?,
            external_id: input
                .external_id
                .as_deref()
                .map(check_external_id)
                .transpose()?,
            rate_limit: check_rate_limit(input.rate_limit)?,
            metadata: check_metadata(input.metadata)?,
            credits: input
                .credits
                .map(|credits| check_credits(credits, 1, now))
                .transpose()?,
            created_at: Timestamp(now),
            updated_at: Timestamp(now),
            version: 0,
        };
        let store = state.store()?;
        let saved = state
            .call(store.insert_owner(&record, &principal.actor, now))
            .await
            .map_err(taken)?;
        state.refresh().await;
        Ok((StatusCode::CREATED, json!(saved)))
    })
    .await
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
    Query(filter): Query<OwnerListFilter>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let store = state.store()?;
        let external_id = filter.external_id.as_deref().filter(|id| !id.is_empty());
        let mut owners = state
            .call(store.list_owners(external_id, params.after()?, limit + 1))
            .await?;
        let next = page(&mut owners, limit, |o| (o.created_at.0, &o.id));
        Ok((StatusCode::OK, json!({"data": owners, "next_cursor": next})))
    };
    respond(answer.await)
}

pub async fn show(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    respond(find(&state, &id).await.map(|o| (StatusCode::OK, json!(o))))
}

/// The patch applied to `current`, or why it cannot be.
fn patched(current: &OwnerRecord, input: &PatchOwner, now: i64) -> Result<OwnerRecord, AdminError> {
    let mut next = current.clone();
    if let Some(name) = &input.name {
        next.name = check_name(name)?;
    }
    match &input.external_id {
        None => {}
        Some(Value::Null) => next.external_id = None,
        Some(Value::String(text)) => next.external_id = Some(check_external_id(text)?),
        Some(_) => {
            return Err(AdminError::InvalidRequest(
                "external_id must be a string or null".into(),
            ))
        }
    }
    match &input.rate_limit {
        None => {}
        Some(Value::Null) => next.rate_limit = None,
        Some(other) => {
            let parsed: RateLimitOverride = serde_json::from_value(other.clone())
                .map_err(|e| AdminError::InvalidRequest(format!("rate_limit: {e}")))?;
            next.rate_limit = check_rate_limit(Some(parsed))?;
        }
    }
    if let Some(metadata) = &input.metadata {
        next.metadata = check_metadata(Some(metadata.clone()))?;
    }
    if let Some(credits) = &input.credits {
        next.credits = patched_credits(credits.clone(), current.credits.as_ref(), now)?;
    }
    next.updated_at = Timestamp(now);
    Ok(next)
}

pub async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer = async {
        let input: PatchOwner = parse_change(&body)?;
        let store = state.store()?;
        let input = &input;
        let id = &id;
        let state = &*state;
        let actor = &principal.actor;
        let saved = until_committed(state.syncer.deadline(), || async move {
            let current = find(state, id).await?;
            // Two changes in the same millisecond must still be told apart.
            let now = state.now().max(current.updated_at.0 + 1);
            let next = patched(&current, input, now)?;
            match state
                .call(store.replace_owner(&current, &next, "owner.update", actor, now))
                .await
            {
                Ok(saved) => Ok(Some(saved)),
                // A lost race on the version is retried; a taken external_id is not.
                Err(AdminError::Conflict) => match state.call(store.get_owner(id)).await {
                    Ok(again) if again.version != current.version => Ok(None),
                    _ => Err(taken(AdminError::Conflict)),
                },
                Err(error) => Err(error),
            }
        })
        .await?;
        state.refresh().await;
        Ok((StatusCode::OK, json!(saved)))
    };
    respond(answer.await)
}

pub async fn keys(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Response {
    let answer = async {
        let owner = find(&state, &id).await?;
        let limit = params.limit()?;
        let store = state.store()?;
        let mut keys = state
            .call(store.owner_keys(&owner.id, params.after()?, limit + 1))
            .await?;
        let next = page(&mut keys, limit, |k| (k.created_at.0, &k.id));
        Ok((StatusCode::OK, json!({"data": keys, "next_cursor": next})))
    };
    respond(answer.await)
}
