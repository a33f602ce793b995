//! `/admin/v1/tokens`: admin tokens for automation, as Unkey's root keys are. A token holds
//! a role or a list of permissions, never more than its creator holds; only its digest is
//! stored, and the secret is shown once.

use super::idempotency::idempotent;
use super::principal::{role_permissions, token_permissions, Principal};
use super::retry::{committed, until_committed};
use super::{page, parse_body, respond, AdminError, AdminState, Answer, ListParams};
use crate::admin_access::Permissions;
use crate::auth::{api_key, base62};
use crate::store::records::{AdminTokenRecord, Timestamp};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    #[serde(default, deserialize_with = "super::not_null")]
    permissions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::not_null")]
    role: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    expires_at: Option<String>,
}

/// The record, with what it may do now, and the secret when just minted.
fn shown(state: &AdminState, token: &AdminTokenRecord, secret: Option<String>) -> Value {
    let mut value = json!(token);
    value["effective_permissions"] = json!(token_permissions(state, token).names());
    if let Some(secret) = secret {
        value["token"] = Value::String(secret);
    }
    value
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /tokens".into(), &body, || async {
        let input: CreateToken = parse_body(&body)?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(AdminError::InvalidRequest(
                "name must be 1 to 200 printable characters".into(),
            ));
        }
        let (granted, permissions, role) = match (input.permissions, input.role) {
            (Some(_), Some(_)) => {
                return Err(AdminError::InvalidRequest(
                    "give permissions or a role, not both".into(),
                ))
            }
            (None, None) => {
                return Err(AdminError::InvalidRequest(
                    "give permissions (a list) or a role".into(),
                ))
            }
            (Some(names), None) => {
                let set = Permissions::parse(&names).map_err(|name| {
                    AdminError::InvalidRequest(format!("unknown admin permission \"{name}\""))
                })?;
                if set.is_empty() {
                    return Err(AdminError::PermissionRequired);
                }
                let names = set.names().into_iter().map(str::to_string).collect();
                (set, names, None)
            }
            (None, Some(role)) => {
                let set = role_permissions(&state, &role).ok_or_else(|| {
                    AdminError::InvalidRequest(format!("unknown role \"{role}\""))
                })?;
                (set, Vec::new(), Some(role))
            }
        };
        principal.may_grant(granted)?;
        let now = state.now();
        let expires_at = match input.expires_at.as_deref() {
            None => None,
            Some(text) => {
                let at = crate::clock::parse_rfc3339(text).ok_or_else(|| {
                    AdminError::InvalidRequest(format!(
                        "expires_at \"{text}\" is not an RFC 3339 time"
                    ))
                })?;
                if at <= now {
                    return Err(AdminError::InvalidRequest(
                        "expires_at must be in the future".into(),
                    ));
                }
                Some(Timestamp(at))
            }
        };
        let minted = api_key::mint_admin_token(&state.rules.key_prefix);
        let record = AdminTokenRecord {
            id: format!("tok_{}", base62::random(20)),
            name,
            start: minted.start.clone(),
            permissions,
            role,
            expires_at,
            created_at: Timestamp(now),
            created_by: principal.actor.clone(),
            revoked_at: None,
            last_used_at: None,
            digest: minted.digest,
            version: 0,
        };
        let store = state.store()?;
        let saved = state
            .call(store.insert_token(&record, &principal.actor, now))
            .await?;
        Ok((
            StatusCode::CREATED,
            shown(&state, &saved, Some(minted.secret)),
        ))
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
        let mut tokens = state
            .call(store.list_tokens(params.after()?, limit + 1))
            .await?;
        let next = page(&mut tokens, limit, |t| (t.created_at.0, &t.id));
        let data: Vec<Value> = tokens.iter().map(|t| shown(&state, t, None)).collect();
        Ok((StatusCode::OK, json!({"data": data, "next_cursor": next})))
    };
    respond(answer.await)
}

/// Revocation takes no fields: an empty body or `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeToken {}

pub async fn revoke(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer: Answer = async {
        let _: RevokeToken = parse_body(&body)?;
        let store = state.store()?;
        let (state, id, principal) = (&*state, id.as_str(), &principal);
        until_committed(state.syncer.deadline(), || async move {
            let current = match state.call(store.get_token(id)).await {
                Err(AdminError::NotFound(_)) => return Err(AdminError::NotFound("token")),
                other => other?,
            };
            if current.revoked_at.is_some() {
                return Err(AdminError::AlreadyDeleted(
                    "the token is already revoked; revocation is final",
                ));
            }
            let saved = committed(
                state
                    .call(store.revoke_token(&current, &principal.actor, state.now()))
                    .await,
            )?;
            Ok(saved.map(|saved| (StatusCode::OK, shown(state, &saved, None))))
        })
        .await
    }
    .await;
    respond(answer)
}
