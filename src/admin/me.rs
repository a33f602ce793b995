//! `POST/DELETE /admin/v1/session` and `GET /admin/v1/me`: console sign-in with a session
//! kept in the store (so every replica honours it and a sign-out ends it everywhere),
//! throttled per email across replicas, equally slow whether or not the email exists.

use super::principal::{Principal, SESSION_COOKIE};
use super::{parse_body, AdminError, AdminState};
use crate::auth::password::verify_password;
use crate::auth::{api_key, base62};
use crate::store::records::SessionRecord;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Failed sign-ins for one email within this window...
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60_000;
/// ...past which sign-in for that email answers `429 too_many_attempts`.
pub const THROTTLE_AFTER: i64 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

/// A signed-in operator's session, as `POST /session` and the console start it.
pub struct Started {
    pub operator: serde_json::Value,
    pub session: String,
    pub csrf_token: String,
}

/// Checks an email and password and starts a session: the one sign-in, for the API and
/// the console alike.
pub async fn start_session(
    state: &AdminState,
    email: &str,
    password: String,
) -> Result<Started, AdminError> {
    let store = state.store()?;
    let now = state.now();
    let since = now - THROTTLE_WINDOW_MS;
    let (failures, oldest) = state.call(store.signin_failures(email, since)).await?;
    if failures >= THROTTLE_AFTER {
        state.signins.with_label_values(&["throttled"]).inc();
        let retry = oldest.map_or(THROTTLE_WINDOW_MS, |at| at + THROTTLE_WINDOW_MS - now);
        return Err(AdminError::TooManyAttempts((retry.max(1000) / 1000) as u64));
    }
    let operator = state.call(store.operator_by_email(email)).await?;
    let hash = operator
        .as_ref()
        .filter(|operator| !operator.disabled)
        .map(|operator| operator.password_hash.clone());
    // The same argon2 work whether or not the email exists (a dummy hash otherwise).
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let Some(operator) = operator.filter(|_| verified) else {
        state
            .call(store.record_signin_failure(email, now, since))
            .await?;
        state.signins.with_label_values(&["failed"]).inc();
        return Err(AdminError::InvalidCredentials);
    };
    let session = base62::random(43);
    let csrf_token = base62::random(43);
    let record = SessionRecord {
        operator_id: operator.id.clone(),
        csrf_digest: api_key::digest(csrf_token.as_bytes()),
        created_at: now,
        expires_at: now + state.session_ttl.as_millis() as i64,
        ended_at: None,
    };
    state
        .call(store.start_session(
            &api_key::digest(session.as_bytes()),
            &record,
            &operator,
            now,
        ))
        .await?;
    state.signins.with_label_values(&["ok"]).inc();
    Ok(Started {
        operator: json!(operator),
        session,
        csrf_token,
    })
}

/// The `Set-Cookie` of a session: HttpOnly, SameSite=Strict, Path=/, Secure over TLS.
/// `None` clears it.
pub fn session_cookie(state: &AdminState, session: Option<&str>) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let text = match session {
        Some(id) => format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            state.session_ttl.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

pub async fn sign_in(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let answer = async {
        let input: SignIn = parse_body(&body)?;
        if input.email.trim().is_empty() || input.password.is_empty() {
            return Err(AdminError::InvalidRequest(
                "give the email and the password".into(),
            ));
        }
        start_session(&state, &input.email, input.password).await
    };
    match answer.await {
        Ok(started) => {
            let mut response = Json(json!({
                "operator": started.operator, "csrf_token": started.csrf_token,
            }))
            .into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::SET_COOKIE,
                session_cookie(&state, Some(&started.session)),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Ends the caller's session in the store; `false` when the caller came with a token
/// and had none to end.
pub async fn end_session(state: &AdminState, principal: &Principal) -> Result<bool, AdminError> {
    let Some(session) = &principal.session else {
        return Ok(false);
    };
    let store = state.store()?;
    let now = state.now();
    state
        .call(store.end_session(&session.id_digest, now))
        .await?;
    let target = principal.actor.id.clone().unwrap_or_default();
    if let Err(error) = store
        .audit_event(&principal.actor, "session.end", &target, now)
        .await
    {
        tracing::warn!(%error, "could not audit a sign-out");
    }
    Ok(true)
}

pub async fn sign_out(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    match end_session(&state, &principal).await {
        Ok(ended) => {
            let mut response = Json(json!({"signed_out": ended})).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, None));
            response
        }
        Err(error) => error.into_response(),
    }
}

pub async fn show(Extension(principal): Extension<Principal>) -> Response {
    (StatusCode::OK, Json(principal.describe())).into_response()
}
