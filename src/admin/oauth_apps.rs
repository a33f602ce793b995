//! `/admin/v1/clients` (OAuth apps) and `/admin/v1/users` (people who sign in).

use super::idempotency::idempotent;
use super::principal::Principal;
use super::retry::until_committed;
use super::{page, parse_body, respond, AdminError, AdminState, Answer, ListParams};
use crate::auth::password;
use crate::auth::{api_key, base62};
use crate::store::records::{ClientRecord, ClientType, Timestamp, UserRecord};
use crate::store::StoreError;
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
struct CreateClient {
    name: String,
    #[serde(rename = "type")]
    client_type: ClientType,
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
}

/// An exact, absolute http(s) URI without a fragment.
fn check_redirect_uri(uri: &str) -> Result<(), AdminError> {
    let parsed = url::Url::parse(uri).map_err(|_| {
        AdminError::InvalidRequest(format!("redirect_uri \"{uri}\" is not an absolute URL"))
    })?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.fragment().is_some()
        || parsed.host().is_none()
    {
        return Err(AdminError::InvalidRequest(format!(
            "redirect_uri \"{uri}\" must be an http(s) URL with a host and no fragment"
        )));
    }
    Ok(())
}

pub async fn create_client(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /clients".into(), &body, || async {
        let input: CreateClient = parse_body(&body)?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(AdminError::InvalidRequest(
                "name must be 1 to 200 characters".into(),
            ));
        }
        if input.redirect_uris.is_empty() || input.redirect_uris.len() > 20 {
            return Err(AdminError::InvalidRequest(
                "give 1 to 20 redirect_uris".into(),
            ));
        }
        for uri in &input.redirect_uris {
            check_redirect_uri(uri)?;
        }
        if input.scopes.is_empty() {
            return Err(AdminError::PermissionRequired);
        }
        for scope in &input.scopes {
            if !state.rules.knows_permission(scope) {
                return Err(AdminError::UnknownPermission(scope.clone()));
            }
        }
        let secret = (input.client_type == ClientType::Confidential)
            .then(|| format!("tgs_{}", base62::random(40)));
        let now = state.now();
        let record = ClientRecord {
            client_id: format!("app_{}", base62::random(20)),
            name,
            client_type: input.client_type,
            redirect_uris: input.redirect_uris,
            scopes: input.scopes,
            created_at: Timestamp(now),
            deleted_at: None,
            secret_digest: secret.as_ref().map(|s| api_key::digest(s.as_bytes())),
            version: 0,
        };
        let store = state.store()?;
        let saved = state
            .call(store.insert_client(&record, &principal.actor, now))
            .await?;
        state.refresh().await;
        let mut shown = serde_json::to_value(&saved).unwrap_or_else(|_| json!({}));
        if let Some(secret) = secret {
            shown["client_secret"] = Value::String(secret);
        }
        Ok((StatusCode::CREATED, shown))
    })
    .await
}

pub async fn list_clients(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let store = state.store()?;
        let mut clients = state
            .call(store.list_clients(params.after()?, limit + 1))
            .await?;
        let next = page(&mut clients, limit, |c| (c.created_at.0, &c.client_id));
        Ok((
            StatusCode::OK,
            json!({"data": clients, "next_cursor": next}),
        ))
    };
    respond(answer.await)
}

async fn find_client(state: &AdminState, id: &str) -> Result<ClientRecord, AdminError> {
    let store = state.store()?;
    match state.call(store.get_client(id)).await {
        Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("client")),
        other => other,
    }
}

pub async fn show_client(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    respond(
        find_client(&state, &id)
            .await
            .map(|c| (StatusCode::OK, json!(c))),
    )
}

/// Deletes an app: its tokens stop working and it can no longer sign anyone in.
pub async fn delete_client(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let answer: Answer = async {
        let store = state.store()?;
        let (state, id, actor) = (&*state, id.as_str(), &principal.actor);
        until_committed(state.syncer.deadline(), || async move {
            let current = find_client(state, id).await?;
            if current.deleted_at.is_some() {
                return Err(AdminError::AlreadyDeleted(
                    "the app was already deleted; deletion is final",
                ));
            }
            match state
                .call(store.delete_client(&current, actor, state.now()))
                .await
            {
                Ok(saved) => {
                    state.refresh().await;
                    Ok(Some((StatusCode::OK, json!(saved))))
                }
                Err(AdminError::Conflict) => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await
    }
    .await;
    respond(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    #[serde(default, deserialize_with = "super::not_null")]
    password: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    disabled: Option<bool>,
}

/// A new password's hash, or why it cannot be set (users and operators alike).
pub(super) fn check_password(password: &str) -> Result<String, AdminError> {
    if !password::acceptable(password) {
        return Err(AdminError::InvalidRequest(format!(
            "password must be {} to {} characters",
            password::MIN_LEN,
            password::MAX_LEN
        )));
    }
    password::hash_password(password)
        .map_err(|_| AdminError::InvalidRequest("password cannot be hashed".into()))
}

/// [`check_password`] off the async threads (argon2 takes tens of milliseconds).
pub(super) async fn hash_new_password(password: String) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || check_password(&password))
        .await
        .map_err(|_| AdminError::InvalidRequest("password cannot be hashed".into()))?
}

pub async fn create_user(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /users".into(), &body, || async {
        let input: CreateUser = parse_body(&body)?;
        let username = input.username.trim().to_string();
        let valid = (1..=100).contains(&username.len())
            && !username
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(AdminError::InvalidRequest(
                "username must be 1 to 100 characters without spaces".into(),
            ));
        }
        let hash = hash_new_password(input.password).await?;
        let now = state.now();
        let record = UserRecord {
            id: format!("usr_{}", base62::random(20)),
            username,
            disabled: input.disabled,
            created_at: Timestamp(now),
            password_changed_at: None,
            password_hash: hash,
            version: 0,
        };
        let store = state.store()?;
        match tokio::time::timeout(
            state.syncer.deadline(),
            store.insert_user(&record, &principal.actor, now),
        )
        .await
        {
            Ok(Ok(saved)) => {
                state.refresh().await;
                Ok((StatusCode::CREATED, json!(saved)))
            }
            Ok(Err(StoreError::Duplicate)) => {
                Err(AdminError::Taken("that username is taken".into()))
            }
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(AdminError::StoreUnavailable),
        }
    })
    .await
}

pub async fn list_users(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let store = state.store()?;
        let mut users = state
            .call(store.list_users(params.after()?, limit + 1))
            .await?;
        let next = page(&mut users, limit, |u| (u.created_at.0, &u.id));
        Ok((StatusCode::OK, json!({"data": users, "next_cursor": next})))
    };
    respond(answer.await)
}

pub async fn update_user(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer: Answer = async {
        let input: PatchUser = super::parse_change(&body)?;
        let hash = match input.password {
            Some(password) => Some(hash_new_password(password).await?),
            None => None,
        };
        let store = state.store()?;
        let (state, id, hash, disabled) = (&*state, id.as_str(), &hash, input.disabled);
        let actor = &principal.actor;
        until_committed(state.syncer.deadline(), || async move {
            let current = match state.call(store.get_user(id)).await {
                Err(AdminError::NotFound(_)) => return Err(AdminError::NotFound("user")),
                other => other?,
            };
            let now = state.now();
            let mut next = current.clone();
            if let Some(hash) = hash {
                next.password_hash = hash.clone();
                next.password_changed_at = Some(Timestamp(now));
            }
            if let Some(disabled) = disabled {
                next.disabled = disabled;
            }
            // A disable or a new password ends every grant issued before it, for good:
            // enabling the user again brings none of them back.
            let ends_grants = hash.is_some() || (next.disabled && !current.disabled);
            let end_grants = ends_grants.then(|| now + state.grant_lifetime_ms);
            match state
                .call(store.replace_user(&current, &next, end_grants, actor, now))
                .await
            {
                Ok(saved) => {
                    state.refresh().await;
                    Ok(Some((StatusCode::OK, json!(saved))))
                }
                Err(AdminError::Conflict) => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await
    }
    .await;
    respond(answer)
}
