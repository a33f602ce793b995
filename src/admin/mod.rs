//! The admin listener: the control plane of SPEC sections 6 and 10 under `/admin/v1`, each
//! endpoint behind the permission its table entry names, plus health and readiness.

mod analytics;
mod credits;
pub mod endpoint;
pub mod endpoints;
mod error;
mod idempotency;
pub mod key_rules;
mod keys;
mod me;
mod oauth_apps;
pub mod openapi;
mod operators;
mod owners;
mod policy;
pub mod principal;
mod retry;
mod tokens;
mod webhooks;

pub use error::AdminError;
pub use operators::new_operator;

use crate::clock;
use crate::lifecycle::Readiness;
use crate::store::records::Policy;
use crate::store::sync::Syncer;
use crate::store::{Store, StoreResult};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use key_rules::KeyRules;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

const MAX_BODY: usize = 64 * 1024;

pub struct AdminState {
    pub syncer: Arc<Syncer>,
    pub rules: KeyRules,
    /// The operator token; `None` when its environment variable is unset.
    pub token: Option<String>,
    pub readiness: Arc<Readiness>,
    /// How long a revoked grant must be remembered: its refresh token's lifetime plus an
    /// access token's.
    pub grant_lifetime_ms: i64,
    /// Custom operator roles (`admin.roles`), beside the built-in ones.
    pub roles: std::collections::BTreeMap<String, crate::admin_access::Permissions>,
    pub session_ttl: std::time::Duration,
    /// The admin listener speaks TLS: session cookies are `Secure`.
    pub secure_cookies: bool,
    /// `tollgate_admin_requests_total{permission, status}`.
    pub admin_requests: prometheus::IntCounterVec,
    /// `tollgate_signins_total{result}`.
    pub signins: prometheus::IntCounterVec,
    /// Where webhooks may be registered to (`webhooks.allow_private_destinations`).
    pub webhooks: crate::config::WebhookConfig,
    /// The data plane's counters, for credit changes that start from what it counted.
    pub limiter: Option<Arc<crate::policy::rate_limit::Limiter>>,
}

impl AdminState {
    /// The admin metrics, registered with their known label values at 0.
    pub fn metrics(
        registry: &crate::metrics::Metrics,
    ) -> (prometheus::IntCounterVec, prometheus::IntCounterVec) {
        let admin_requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tollgate_admin_requests_total",
                "Admin API requests, by the permission the endpoint needs and the answer's status.",
            ),
            &["permission", "status"],
        )
        .expect("static metric definition");
        let signins = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tollgate_signins_total",
                "Operator sign-ins: ok, failed (wrong email or password), throttled.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for result in ["ok", "failed", "throttled"] {
            signins.with_label_values(&[result]);
        }
        registry.register(Box::new(admin_requests.clone()));
        registry.register(Box::new(signins.clone()));
        (admin_requests, signins)
    }
}

impl AdminState {
    fn store(&self) -> Result<&Store, AdminError> {
        self.syncer.store().ok_or(AdminError::StoreUnavailable)
    }

    /// Runs a store operation with a deadline, so a frozen database answers 503.
    async fn call<T>(
        &self,
        operation: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, AdminError> {
        let result = tokio::time::timeout(self.syncer.deadline(), operation)
            .await
            .unwrap_or_else(|_| Err(crate::store::StoreError::Unavailable("timed out".into())));
        if matches!(result, Err(crate::store::StoreError::Unavailable(_))) {
            self.syncer.store_failed();
        }
        result.map_err(AdminError::from)
    }

    /// The policy as the store has it now (not as the snapshot last saw it).
    async fn policy(&self) -> Result<(Policy, i64), AdminError> {
        let store = self.store()?;
        match self.call(store.get_policy()).await? {
            Some(found) => Ok(found),
            None => Ok((self.syncer.snapshot.load().policy, 0)),
        }
    }

    /// Makes a committed write visible to this replica's data plane at once.
    async fn refresh(&self) {
        if let Err(error) = self.syncer.sync_now().await {
            tracing::warn!(%error, "snapshot refresh after an admin write failed; the periodic sync will retry");
        }
    }

    fn now(&self) -> i64 {
        clock::now_ms()
    }
}

pub fn router(state: Arc<AdminState>) -> Router {
    let api = endpoints::router()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            endpoints::checked,
        ))
        .fallback(|| async { AdminError::NotFound("admin endpoint") });
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .nest("/admin/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_rejections))
        .with_state(state)
}

/// axum answers an oversized body and a wrong method itself, in plain text; those answers
/// get the admin error shape like every other refusal.
async fn json_rejections(response: Response) -> Response {
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !json => AdminError::BodyTooLarge.into_response(),
        StatusCode::METHOD_NOT_ALLOWED if !json => {
            let allow = response.headers().get(axum::http::header::ALLOW).cloned();
            let mut refused = AdminError::MethodNotAllowed.into_response();
            if let Some(allow) = allow {
                refused
                    .headers_mut()
                    .insert(axum::http::header::ALLOW, allow);
            }
            refused
        }
        _ => response,
    }
}

async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<serde_json::Value>) {
    if state.readiness.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "reason": "the first snapshot is not loaded yet"})),
        )
    }
}

/// Parses a JSON body strictly: unknown fields, wrong types and nulls where a value is
/// needed are `invalid_request`, each naming the field. An empty body is `{}`.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    // serde reads a struct from an array too (`[]` as every field left out): a body is an
    // object, or nothing.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(AdminError::InvalidRequest(
            "request body: expected a JSON object".into(),
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut json).map_err(body_error)?;
    json.end()
        .map_err(|error| AdminError::InvalidRequest(format!("request body: {error}")))?;
    Ok(parsed)
}

/// [`parse_body`] for a `PATCH` or `PUT`, which states a change: without a body it says
/// nothing, and is refused.
fn parse_change<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminError::InvalidRequest(
            "this request needs a JSON body saying what to change".into(),
        ));
    }
    parse_body(body)
}

/// [`parse_body`] for a body already read as JSON.
fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, AdminError> {
    serde_path_to_error::deserialize(value).map_err(body_error)
}

fn body_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> AdminError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    AdminError::InvalidRequest(if path == "." {
        format!("request body: {inner}")
    } else {
        format!("request body: {path}: {inner}")
    })
}

/// For an optional field that may be left out but never sent as `null`.
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `limit` (default 50, at most 500) and the opaque `cursor` of list endpoints.
#[derive(Debug, serde::Deserialize)]
struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    fn limit(&self) -> Result<i64, AdminError> {
        match &self.limit {
            None => Ok(50),
            Some(text) => match text.parse::<i64>() {
                Ok(limit) if (1..=500).contains(&limit) => Ok(limit),
                _ => Err(AdminError::InvalidRequest(
                    "limit must be a number from 1 to 500".into(),
                )),
            },
        }
    }

    fn cursor(&self) -> Result<Option<String>, AdminError> {
        self.cursor
            .as_ref()
            .map(|cursor| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(bad_cursor)
            })
            .transpose()
    }

    /// The `(created_at, id)` a page of a newest-first list continues after.
    fn after(&self) -> Result<Option<(i64, String)>, AdminError> {
        self.cursor()?
            .map(|cursor| {
                cursor
                    .split_once(':')
                    .and_then(|(created, id)| Some((created.parse::<i64>().ok()?, id.to_string())))
                    .ok_or_else(bad_cursor)
            })
            .transpose()
    }
}

fn bad_cursor() -> AdminError {
    AdminError::InvalidRequest("cursor is not one this API returned".into())
}

/// Cuts a fetched `limit + 1` rows to a page, and the cursor of the next page when there
/// is one: the `(created_at, id)` of its last row.
fn page<T>(items: &mut Vec<T>, limit: i64, last: impl Fn(&T) -> (i64, &str)) -> Option<String> {
    if items.len() as i64 <= limit {
        return None;
    }
    items.truncate(limit as usize);
    items.last().map(|item| {
        let (created, id) = last(item);
        encode_cursor(&format!("{created}:{id}"))
    })
}

fn encode_cursor(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A successful answer: status and JSON body.
type Answer = Result<(StatusCode, serde_json::Value), AdminError>;

fn respond(answer: Answer) -> Response {
    match answer {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(error) => error.into_response(),
    }
}
