//! `/admin/v1/operators`: the members of the workbench, each with one role. Nobody grants a
//! role holding more than they hold, and the last enabled owner stays an enabled owner.

use super::idempotency::idempotent;
use super::oauth_apps::hash_new_password;
use super::principal::{role_permissions, Principal};
use super::retry::{committed, until_committed};
use super::{page, parse_body, respond, AdminError, AdminState, Answer, ListParams};
use crate::auth::base62;
use crate::store::records::{OperatorRecord, Timestamp};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOperator {
    email: String,
    name: String,
    password: String,
    role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchOperator {
    #[serde(default, deserialize_with = "super::not_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    role: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "super::not_null")]
    password: Option<String>,
}

/// An email address as people write them: one `@`, something on each side, no spaces.
fn check_email(email: &str) -> Result<String, AdminError> {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !valid {
        return Err(AdminError::InvalidRequest(format!(
            "email \"{email}\" is not an email address"
        )));
    }
    Ok(email.to_string())
}

fn check_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(AdminError::InvalidRequest(
            "name must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// The role, known, and within what the caller holds.
fn check_role(state: &AdminState, principal: &Principal, role: &str) -> Result<String, AdminError> {
    let permissions = role_permissions(state, role).ok_or_else(|| {
        let mut known: Vec<&str> = crate::admin_access::BUILT_IN_ROLES.to_vec();
        known.extend(state.roles.keys().map(String::as_str));
        AdminError::InvalidRequest(format!(
            "unknown role \"{role}\" (the roles are {})",
            known.join(", ")
        ))
    })?;
    principal.may_grant(permissions)?;
    Ok(role.to_string())
}

/// A new operator's record from what a person typed, by the same rules as
/// `POST /operators` (the role is not checked here: `tollgate bootstrap` and the demo make
/// the first owner, before anyone can hold a role).
pub fn new_operator(
    email: &str,
    name: &str,
    role: &str,
    password: &str,
    now: i64,
) -> Result<OperatorRecord, AdminError> {
    Ok(OperatorRecord {
        id: format!("op_{}", base62::random(20)),
        email: check_email(email)?,
        name: check_name(name)?,
        role: role.to_string(),
        disabled: false,
        created_at: Timestamp(now),
        password_changed_at: None,
        password_hash: super::oauth_apps::check_password(password)?,
        version: 0,
    })
}

/// The operator as the API shows it: never the password or its hash.
fn shown(operator: &OperatorRecord) -> serde_json::Value {
    json!(operator)
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(
        &state,
        &headers,
        "POST /operators".into(),
        &body,
        || async {
            let input: CreateOperator = parse_body(&body)?;
            let role = check_role(&state, &principal, &input.role)?;
            let now = state.now();
            let record = tokio::task::spawn_blocking(move || {
                new_operator(&input.email, &input.name, &role, &input.password, now)
            })
            .await
            .map_err(|_| AdminError::InvalidRequest("password cannot be hashed".into()))??;
            let store = state.store()?;
            match state
                .call(store.insert_operator(&record, &principal.actor, now))
                .await
            {
                Ok(saved) => Ok((StatusCode::CREATED, shown(&saved))),
                Err(AdminError::Conflict) => Err(AdminError::Taken(
                    "an operator with this email exists (emails are compared without case)".into(),
                )),
                Err(error) => Err(error),
            }
        },
    )
    .await
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Query(params): Query<ListParams>,
) -> Response {
    let answer = async {
        let limit = params.limit()?;
        let store = state.store()?;
        let mut operators = state
            .call(store.list_operators(params.after()?, limit + 1))
            .await?;
        let next = page(&mut operators, limit, |o| (o.created_at.0, &o.id));
        let data: Vec<_> = operators.iter().map(shown).collect();
        Ok((StatusCode::OK, json!({"data": data, "next_cursor": next})))
    };
    respond(answer.await)
}

async fn find(state: &AdminState, id: &str) -> Result<OperatorRecord, AdminError> {
    let store = state.store()?;
    match state.call(store.get_operator(id)).await {
        Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("operator")),
        other => other,
    }
}

pub async fn show(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    respond(find(&state, &id).await.map(|o| (StatusCode::OK, shown(&o))))
}

pub async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer: Answer = async {
        let input: PatchOperator = super::parse_change(&body)?;
        let name = input.name.as_deref().map(check_name).transpose()?;
        let role = input
            .role
            .as_deref()
            .map(|role| check_role(&state, &principal, role))
            .transpose()?;
        let hash = match input.password {
            Some(password) => Some(hash_new_password(password).await?),
            None => None,
        };
        let store = state.store()?;
        let (state, id, principal) = (&*state, id.as_str(), &principal);
        let (name, role, hash, disabled) = (&name, &role, &hash, input.disabled);
        until_committed(state.syncer.deadline(), || async move {
            let current = find(state, id).await?;
            // Changing someone who holds more than you would hand you their reach.
            if let Some(theirs) = role_permissions(state, &current.role) {
                principal.may_grant(theirs)?;
            }
            let now = state.now();
            let mut next = current.clone();
            if let Some(name) = name {
                next.name = name.clone();
            }
            if let Some(role) = role {
                next.role = role.clone();
            }
            if let Some(disabled) = disabled {
                next.disabled = disabled;
            }
            if let Some(hash) = hash {
                next.password_hash = hash.clone();
                next.password_changed_at = Some(Timestamp(now));
            }
            let end_sessions = hash.is_some() || (next.disabled && !current.disabled);
            let saved = committed(
                state
                    .call(store.replace_operator(
                        &current,
                        &next,
                        end_sessions,
                        &principal.actor,
                        now,
                    ))
                    .await,
            )?;
            Ok(saved.map(|saved| (StatusCode::OK, shown(&saved))))
        })
        .await
    }
    .await;
    respond(answer)
}
