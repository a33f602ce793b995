//! `Idempotency-Key` on POST: the same key and body within 24 h returns the first answer.
//! Secrets are shown once, so a replayed create or rotate comes back without them.

use super::{AdminError, AdminState, Answer};
use crate::store::Idempotent;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::future::Future;

const WINDOW_MS: i64 = 24 * 3_600_000;
/// Fields never written to the idempotency table.
const SECRET_FIELDS: &[&str] = &["key", "client_secret", "token", "secret"];

pub async fn idempotent<F: Future<Output = Answer>>(
    state: &AdminState,
    headers: &HeaderMap,
    scope: String,
    body: &Bytes,
    run: impl FnOnce() -> F,
) -> Response {
    let Some(key) = headers.get("idempotency-key") else {
        return super::respond(run().await);
    };
    let key = match key.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) => key.to_string(),
        _ => {
            return AdminError::InvalidRequest(
                "Idempotency-Key must be 1 to 255 visible characters".into(),
            )
            .into_response()
        }
    };
    let hash = hex::encode(Sha256::digest(body));
    let store = match state.store() {
        Ok(store) => store,
        Err(error) => return error.into_response(),
    };
    let now = state.now();
    let reserved = state
        .call(store.reserve_idempotency(&key, &scope, &hash, now, now - WINDOW_MS))
        .await;
    match reserved {
        Err(error) => error.into_response(),
        Ok(Idempotent::InProgress) => AdminError::IdempotencyInProgress.into_response(),
        Ok(Idempotent::Done { request_hash, .. }) if request_hash != hash => {
            AdminError::IdempotencyKeyReused.into_response()
        }
        Ok(Idempotent::Done { status, body, .. }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            // A replayed refusal has the full error shape, with a request id of its own.
            let request_id = uuid::Uuid::new_v4().to_string();
            let body = match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(mut stored) if status.is_client_error() && stored["error"].is_object() => {
                    stored["error"]["request_id"] = serde_json::Value::String(request_id.clone());
                    stored.to_string()
                }
                _ => body,
            };
            let mut response = (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            let headers = response.headers_mut();
            headers.insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
                headers.insert("x-request-id", value);
            }
            response
        }
        Ok(Idempotent::Reserved) => {
            let answer = run().await;
            let (status, stored) = match &answer {
                Ok((status, value)) => {
                    let mut kept = value.clone();
                    if let Some(object) = kept.as_object_mut() {
                        for field in SECRET_FIELDS {
                            object.remove(*field);
                        }
                    }
                    (*status, kept)
                }
                Err(error) => (
                    error.status(),
                    serde_json::json!({"error": {"code": error.code(), "message": error.to_string()}}),
                ),
            };
            // Server-side failures are not remembered, so the client can retry them.
            let settled = if status.is_server_error() {
                store.release_idempotency(&key, &scope).await
            } else {
                store
                    .complete_idempotency(&key, &scope, status.as_u16(), &stored.to_string())
                    .await
            };
            if let Err(error) = settled {
                tracing::warn!(%error, "could not record the idempotent answer");
            }
            super::respond(answer)
        }
    }
}
