//! `POST /secret-scanning/github` on the data plane: leaked-key reports as GitHub's
//! secret-scanning partner program sends them. A report signed by one of GitHub's keys is
//! read token by token; a token that is a live key's working secret gets the configured
//! action (revoke, or notify only) and a `key.leaked` event, audited as the system actor
//! `secret-scanning`. The answer labels each token by its SHA-256, never echoing it.

pub mod github_keys;

use crate::admin::key_rules::KeyRules;
use crate::auth::api_key;
use crate::clock;
use crate::config::LeakAction;
use crate::store::records::{Actor, KeyRecord};
use crate::store::snapshot::{KeyEntry, Snapshot};
use crate::store::sync::Syncer;
use crate::store::{Store, StoreError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use github_keys::GithubKeys;
use serde_json::json;
use std::sync::Arc;

pub const PATH: &str = "/secret-scanning/github";
/// Tokens one report may carry.
const MAX_TOKENS: usize = 1000;

pub struct LeakReports {
    pub keys: GithubKeys,
    pub action: LeakAction,
    pub rules: KeyRules,
    pub syncer: Arc<Syncer>,
    /// `tollgate_leak_reports_total{label}`.
    pub reports: prometheus::IntCounterVec,
}

impl LeakReports {
    pub fn metric(registry: &crate::metrics::Metrics) -> prometheus::IntCounterVec {
        let reports = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tollgate_leak_reports_total",
                "Tokens in verified leak reports, by label: true_positive (a key's secret, live or not), false_positive.",
            ),
            &["label"],
        )
        .expect("static metric definition");
        for label in ["true_positive", "false_positive"] {
            reports.with_label_values(&[label]);
        }
        registry.register(Box::new(reports.clone()));
        reports
    }
}

#[derive(Debug, serde::Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    source: String,
}

pub fn router(reports: Arc<LeakReports>) -> Router {
    Router::new().route(PATH, post(report)).with_state(reports)
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}

async fn report(
    State(reports): State<Arc<LeakReports>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(unverified) = reports.keys.verify(
        header("github-public-key-identifier"),
        header("github-public-key-signature"),
        &body,
    ) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            unverified.to_string(),
        );
    }
    let tokens: Vec<Reported> = match serde_json::from_slice(&body) {
        Ok(tokens) => tokens,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                "expected a JSON array of {{\"token\", \"type\", \"url\", \"source\"}}: {error}"
            ),
            )
        }
    };
    if tokens.len() > MAX_TOKENS {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("a report carries at most {MAX_TOKENS} tokens"),
        );
    }
    let Some(store) = reports.syncer.store() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store is unavailable; nothing was changed, send the report again".into(),
        );
    };
    let mut labels = Vec::with_capacity(tokens.len());
    let mut changed = false;
    for reported in &tokens {
        let judged =
            tokio::time::timeout(reports.syncer.deadline(), reports.judge(store, reported))
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())));
        let (label, acted) = match judged {
            Ok(judged) => judged,
            Err(error) => {
                tracing::warn!(%error, "a leak report could not be judged; the reporter retries");
                if changed {
                    reports.refresh().await;
                }
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; send the report again".into(),
                );
            }
        };
        changed |= acted;
        reports.reports.with_label_values(&[label]).inc();
        labels.push(json!({
            "token_hash": hex::encode(api_key::digest(reported.token.as_bytes()).0),
            "token_type": reported.token_type,
            "label": label,
        }));
    }
    if changed {
        reports.refresh().await;
    }
    (StatusCode::OK, Json(serde_json::Value::Array(labels))).into_response()
}

/// What a token's digest names.
enum Found {
    /// A key whose working secret this is (current, or previous in its grace period).
    Working(String),
    /// A key whose secret this was, before a rotation retired it.
    Retired(String),
    Nothing,
}

fn look_up(snapshot: &Snapshot, digest: &api_key::Digest) -> Found {
    match snapshot.by_digest(digest) {
        Some(KeyEntry::Secret { credential, .. }) => Found::Working(credential.id.to_string()),
        Some(KeyEntry::Retired { key_id }) => Found::Retired(key_id.to_string()),
        None => Found::Nothing,
    }
}

impl LeakReports {
    /// The token's label, and whether a key was changed.
    async fn judge(
        &self,
        store: &Store,
        reported: &Reported,
    ) -> Result<(&'static str, bool), StoreError> {
        let digest = api_key::digest(reported.token.as_bytes());
        let found = look_up(&self.syncer.snapshot.load(), &digest);
        let (key, working) = match found {
            Found::Working(id) => (found_key(store.get_key(&id).await)?, true),
            Found::Retired(id) => (found_key(store.get_key(&id).await)?, false),
            // A key made on another replica moments ago may not be in this snapshot yet.
            Found::Nothing => (store.key_by_digest(&digest).await?, true),
        };
        let Some(key) = key else {
            return Ok(("false_positive", false));
        };
        let now = clock::now_ms();
        let live = key.revoked_at.is_none() && key.expires_at.is_none_or(|t| t.0 > now);
        if !(working && live) {
            return Ok(("true_positive", false));
        }
        tracing::warn!(
            key = %key.id,
            token_type = %reported.token_type,
            url = %reported.url,
            source = %reported.source,
            action = ?self.action,
            "a key's secret was reported leaked"
        );
        self.act(store, key, now).await?;
        Ok(("true_positive", true))
    }

    async fn act(&self, store: &Store, mut key: KeyRecord, now: i64) -> Result<(), StoreError> {
        let actor = Actor::system("secret-scanning");
        match self.action {
            LeakAction::Notify => {
                store
                    .audit_with_events(&actor, "key.leak.notify", &key.id, &json!(key), now)
                    .await
            }
            LeakAction::Revoke => {
                // Another writer may change the key meanwhile: read it again and retry.
                for _ in 0..5 {
                    let Ok(change) = self.rules.revoke(&key, now) else {
                        return Ok(()); // revoked meanwhile
                    };
                    match store
                        .replace_key(
                            &key,
                            &change.record,
                            "key.leak.revoke",
                            &actor,
                            &change.retired,
                            now,
                        )
                        .await
                    {
                        Err(StoreError::Conflict) => key = store.get_key(&key.id).await?,
                        other => return other.map(|_| ()),
                    }
                }
                Err(StoreError::Conflict)
            }
        }
    }

    /// Makes a revocation visible to this replica's data plane at once.
    async fn refresh(&self) {
        if let Err(error) = self.syncer.sync_now().await {
            tracing::warn!(%error, "snapshot refresh after a leak report failed; the periodic sync will retry");
        }
    }
}

fn found_key(read: Result<KeyRecord, StoreError>) -> Result<Option<KeyRecord>, StoreError> {
    match read {
        Ok(key) => Ok(Some(key)),
        Err(StoreError::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}
