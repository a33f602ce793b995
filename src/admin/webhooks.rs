//! `/admin/v1/webhooks` (endpoints, their secrets and deliveries) and `/admin/v1/events`
//! (the outbox as a stream to pull, resumable by cursor).

use super::idempotency::idempotent;
use super::principal::Principal;
use super::retry::{committed, until_committed};
use super::{
    encode_cursor, page, parse_body, parse_change, respond, AdminError, AdminState, ListParams,
};
use crate::auth::base62;
use crate::events::catalog;
use crate::events::destination::{self, Refused};
use crate::events::signature;
use crate::store::records::Timestamp;
use crate::store::{WebhookChange, WebhookRecord};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// How long a rotated-out secret keeps signing beside the new one.
const OVERLAP_MS: i64 = 24 * 3600 * 1000;
const MAX_DESCRIPTION: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchWebhook {
    #[serde(default, deserialize_with = "super::not_null")]
    url: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::not_null")]
    description: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    disabled: Option<bool>,
}

/// Takes no fields: an empty body or `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn refusal(refused: Refused) -> AdminError {
    match refused {
        Refused::Invalid(why) => AdminError::InvalidRequest(why),
        Refused::NotAllowed(why) => AdminError::DestinationNotAllowed(why),
    }
}

/// A destination a webhook may be registered with: a valid URL whose host is not, and
/// does not resolve to, an internal address (unless those are allowed).
async fn check_url(state: &AdminState, url: &str) -> Result<String, AdminError> {
    let allow = state.webhooks.allow_private_destinations;
    let parsed = destination::parse(url, allow).map_err(refusal)?;
    destination::check_resolved(&parsed, allow)
        .await
        .map_err(refusal)?;
    Ok(url.to_string())
}

fn check_events(events: &[String]) -> Result<(), AdminError> {
    catalog::check_filter(events).map_err(AdminError::InvalidRequest)
}

fn check_description(description: &str) -> Result<String, AdminError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(AdminError::InvalidRequest(format!(
            "description must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(description.trim().to_string())
}

/// The endpoint, with its secret when one was just made (shown once).
fn shown(record: &WebhookRecord, secret: Option<&str>) -> Value {
    let mut value = json!(record);
    if let (Some(secret), Some(object)) = (secret, value.as_object_mut()) {
        object.insert("secret".into(), Value::String(secret.to_string()));
    }
    value
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /webhooks".into(), &body, || async {
        let input: CreateWebhook = parse_body(&body)?;
        check_events(&input.events)?;
        let description = check_description(&input.description)?;
        let url = check_url(&state, &input.url).await?;
        let now = state.now();
        let record = WebhookRecord {
            id: format!("wh_{}", base62::random(20)),
            url,
            events: input.events,
            description,
            disabled: input.disabled,
            created_at: Timestamp(now),
            updated_at: Timestamp(now),
            previous_secret_until: None,
            secret: signature::new_secret(),
            previous_secret: None,
        };
        let store = state.store()?;
        let saved = state
            .call(store.insert_webhook(&record, &principal.actor, now))
            .await?;
        Ok((StatusCode::CREATED, shown(&saved, Some(&record.secret))))
    })
    .await
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let store = state.store()?;
        let mut webhooks = state
            .call(store.list_webhooks(params.after()?, limit + 1))
            .await?;
        let next = page(&mut webhooks, limit, |w| (w.created_at.0, &w.id));
        Ok((
            StatusCode::OK,
            json!({"data": webhooks, "next_cursor": next}),
        ))
    };
    respond(answer.await)
}

async fn find(state: &AdminState, id: &str) -> Result<WebhookRecord, AdminError> {
    let store = state.store()?;
    match state.call(store.get_webhook(id)).await {
        Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("webhook")),
        other => other,
    }
}

pub async fn show(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    respond(
        find(&state, &id)
            .await
            .map(|w| (StatusCode::OK, shown(&w, None))),
    )
}

/// Reads, changes and writes an endpoint, again when another writer got there first.
async fn change(
    state: &AdminState,
    principal: &Principal,
    id: &str,
    kind: WebhookChange,
    apply: impl Fn(&WebhookRecord, i64) -> WebhookRecord,
) -> Result<WebhookRecord, AdminError> {
    let store = state.store()?;
    let apply = &apply;
    until_committed(state.syncer.deadline(), || async move {
        let current = find(state, id).await?;
        // Two changes in the same millisecond must still be told apart.
        let now = state.now().max(current.updated_at.0 + 1);
        let next = apply(&current, now);
        committed(
            state
                .call(store.replace_webhook(&current, &next, kind, &principal.actor, now))
                .await,
        )
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
        let input: PatchWebhook = parse_change(&body)?;
        if let Some(events) = &input.events {
            check_events(events)?;
        }
        let description = input
            .description
            .as_deref()
            .map(check_description)
            .transpose()?;
        let url = match &input.url {
            Some(url) => Some(check_url(&state, url).await?),
            None => None,
        };
        let saved = change(
            &state,
            &principal,
            &id,
            WebhookChange::Update,
            |current, now| {
                let mut next = current.clone();
                if let Some(url) = &url {
                    next.url = url.clone();
                }
                if let Some(events) = &input.events {
                    next.events = events.clone();
                }
                if let Some(description) = &description {
                    next.description = description.clone();
                }
                if let Some(disabled) = input.disabled {
                    next.disabled = disabled;
                }
                next.updated_at = Timestamp(now);
                next
            },
        )
        .await?;
        Ok((StatusCode::OK, shown(&saved, None)))
    };
    respond(answer.await)
}

pub async fn delete(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let answer = async {
        let current = find(&state, &id).await?;
        let store = state.store()?;
        match state
            .call(store.delete_webhook(&current, &principal.actor, state.now()))
            .await
        {
            Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("webhook")),
            Err(error) => Err(error),
            Ok(()) => Ok((StatusCode::OK, json!({"id": current.id, "deleted": true}))),
        }
    };
    respond(answer.await)
}

/// A new secret, shown once; the one it replaces signs beside it for 24 hours.
pub async fn rotate_secret(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer = async {
        let _: Empty = parse_body(&body)?;
        let secret = signature::new_secret();
        let saved = change(
            &state,
            &principal,
            &id,
            WebhookChange::RotateSecret,
            |current, now| {
                let mut next = current.clone();
                next.previous_secret = Some(current.secret.clone());
                next.previous_secret_until = Some(Timestamp(now + OVERLAP_MS));
                next.secret = secret.clone();
                next.updated_at = Timestamp(now);
                next
            },
        )
        .await?;
        Ok((StatusCode::OK, shown(&saved, Some(&secret))))
    };
    respond(answer.await)
}

/// Enqueues a `webhook.test` event for this endpoint, whatever its filter.
pub async fn test(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer = async {
        let _: Empty = parse_body(&body)?;
        let endpoint = find(&state, &id).await?;
        let store = state.store()?;
        let event_id = state
            .call(store.enqueue_test(&endpoint, state.now()))
            .await?;
        Ok((
            StatusCode::ACCEPTED,
            json!({"event_id": event_id, "type": "webhook.test", "webhook_id": endpoint.id}),
        ))
    };
    respond(answer.await)
}

/// A cursor's event sequence number.
fn seq_of(params: &ListParams) -> Result<Option<i64>, AdminError> {
    params
        .cursor()?
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                AdminError::InvalidRequest("cursor is not one this API returned".into())
            })
        })
        .transpose()
}

pub async fn deliveries(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let before = seq_of(&params)?;
        let endpoint = find(&state, &id).await?;
        let store = state.store()?;
        let mut rows = state
            .call(store.list_deliveries(&endpoint.id, before, limit + 1))
            .await?;
        let next = (rows.len() as i64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|d| encode_cursor(&d.event_seq.to_string()))
        });
        Ok((
            StatusCode::OK,
            json!({"data": rows, "next_cursor": next.flatten()}),
        ))
    };
    respond(answer.await)
}

pub async fn retry(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path((id, delivery_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let answer = async {
        let _: Empty = parse_body(&body)?;
        let endpoint = find(&state, &id).await?;
        let store = state.store()?;
        match state
            .call(store.retry_delivery(&endpoint.id, &delivery_id, &principal.actor, state.now()))
            .await
        {
            Ok(delivery) => Ok((StatusCode::OK, json!(delivery))),
            Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("delivery")),
            Err(AdminError::Conflict) => Err(AdminError::Taken(
                "only a failed delivery can be retried; this one is pending or delivered".into(),
            )),
            Err(error) => Err(error),
        }
    };
    respond(answer.await)
}

/// Every event, oldest first, after the cursor. With `Accept: application/x-ndjson`, one
/// event per line and a last line `{"next_cursor": ...}`; otherwise one JSON document. The
/// cursor is always given, so a puller keeps calling with the one it was handed.
pub async fn events(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    let answer = async {
        let limit = params.limit()?;
        let after = seq_of(&params)?.unwrap_or(0);
        let store = state.store()?;
        let events = state.call(store.list_events(after, limit)).await?;
        let next = encode_cursor(&events.last().map_or(after, |e| e.seq).to_string());
        Ok::<_, AdminError>((events, next))
    };
    match answer.await {
        Err(error) => error.into_response(),
        Ok((events, next)) if ndjson => {
            let mut text = String::new();
            for event in &events {
                text.push_str(&json!(event).to_string());
                text.push('\n');
            }
            text.push_str(&json!({"next_cursor": next}).to_string());
            text.push('\n');
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                Body::from(text),
            )
                .into_response()
        }
        Ok((events, next)) => respond(Ok((
            StatusCode::OK,
            json!({"data": events, "next_cursor": next}),
        ))),
    }
}
