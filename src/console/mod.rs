//! The console (SPEC section 11): the seeds' workbench in a browser, server-rendered with
//! maud and served by the admin listener under `/console/`. Every page works without
//! JavaScript. Every action is a request to the admin API itself, made in process with the
//! signed-in operator's session and the form's CSRF token: the console writes no rule of
//! its own, and the API refuses what the operator may not do.

mod charts;
mod credits;
mod keys;
mod login;
mod owners;
mod page;
mod webhooks;
mod workbench;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The cookie holding the session's CSRF token, for the console to put in its forms.
const CSRF_COOKIE: &str = "tollgate_console_csrf";

/// What the console needs besides the admin API: the names the config declares, for its
/// forms.
pub struct Console {
    api: Router,
    pub permissions: Vec<String>,
    pub presets: BTreeMap<String, Vec<String>>,
    /// The roles a legacy key may carry.
    pub key_roles: Vec<String>,
    /// Operator roles: the built-in ones, then the config's.
    pub operator_roles: Vec<String>,
}

impl Console {
    pub fn new(config: &crate::config::Config, api: Router) -> Console {
        let mut operator_roles: Vec<String> = crate::admin_access::BUILT_IN_ROLES
            .iter()
            .map(|r| r.to_string())
            .collect();
        operator_roles.extend(config.admin.roles.keys().cloned());
        Console {
            api,
            permissions: config.permissions.clone(),
            presets: config.presets.clone(),
            key_roles: config.roles.keys().cloned().collect(),
            operator_roles,
        }
    }
}

/// The console's routes, under `/console`, around the admin router `api`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/static/console.css", get(page::stylesheet))
        .route("/console/static/console.js", get(page::script))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .merge(keys::routes())
        .merge(workbench::routes())
        .merge(owners::routes())
        .merge(credits::routes())
        .merge(webhooks::routes())
        .route(
            "/console/{*rest}",
            axum::routing::any(|| async { page::not_found() }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

/// The headers of SPEC section 11 on every console answer; no page is cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn home(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match Operator::signed_in(&console, &headers).await {
        Some(_) => Redirect::to("/console/keys").into_response(),
        None => Redirect::to("/console/login").into_response(),
    }
}

/// An answer of the admin API.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or("the request failed")
    }

    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }
}

/// The signed-in operator of a console request: their session, the CSRF token forms carry,
/// and `GET /me`.
pub struct Operator {
    session: String,
    pub csrf: String,
    pub name: String,
    pub role: String,
    permissions: Vec<String>,
}

impl Operator {
    /// The operator signed in with this request's cookies, if any (and still valid).
    pub async fn signed_in(console: &Console, headers: &HeaderMap) -> Option<Operator> {
        let session = cookie(headers, crate::admin::principal::SESSION_COOKIE)?;
        let csrf = cookie(headers, CSRF_COOKIE).unwrap_or_default();
        let mut operator = Operator {
            session,
            csrf,
            name: String::new(),
            role: String::new(),
            permissions: Vec::new(),
        };
        let me = console
            .call(&operator, "GET", "/me", None, None, None)
            .await;
        if !me.ok() || me.body["kind"] != "operator" {
            return None;
        }
        operator.name = me.body["name"].as_str().unwrap_or_default().to_string();
        operator.role = me.body["role"].as_str().unwrap_or_default().to_string();
        operator.permissions =
            serde_json::from_value(me.body["permissions"].clone()).unwrap_or_default();
        Some(operator)
    }

    /// Whether the operator holds `permission`: the console offers only what they may do.
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    crate::admin::principal::cookie(headers, name).map(str::to_string)
}

impl Console {
    /// A request to the admin API, as the operator, with `csrf` for a change (the token
    /// the form carried, never the cookie's: a forged form has none).
    pub async fn call(
        &self,
        operator: &Operator,
        method: &str,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("/admin/v1{path}"))
            .header(
                header::COOKIE,
                format!(
                    "{}={}",
                    crate::admin::principal::SESSION_COOKIE,
                    operator.session
                ),
            );
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body)).await
    }

    /// A request to the admin API without a session (signing in).
    pub async fn call_open(&self, method: &str, path: &str, body: Value) -> Reply {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("/admin/v1{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()));
        self.send(request).await
    }

    async fn send(&self, request: Result<http::Request<Body>, http::Error>) -> Reply {
        let failed = |message: &str| Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: serde_json::json!({"error": {"code": "internal_error", "message": message}}),
            headers: HeaderMap::new(),
        };
        let Ok(request) = request else {
            return failed("the console could not build its request");
        };
        let Ok(response) = tower::ServiceExt::oneshot(self.api.clone(), request).await;
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        Reply {
            status: parts.status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers: parts.headers,
        }
    }
}

/// The fields of a posted form, repeated names kept (checkboxes).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, trimmed; empty counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// One entry per non-empty line of a text area.
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The page for a request that is not signed in: to the sign-in form.
pub fn sign_in_first() -> Response {
    Redirect::to("/console/login").into_response()
}
