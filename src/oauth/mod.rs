//! The OAuth 2.0 authorization server of SPEC section 5, served on the data-plane listener:
//! token, authorize, revoke, introspect, metadata and JWKS.

pub mod authorize;
mod client_auth;
mod grants;
mod params;

use crate::auth::jwt::TokenVerifier;
use crate::auth::signing::SigningKeys;
use crate::config::{Config, Environments, OAuthConfig};
use crate::policy::permissions::Catalog;
use crate::store::sync::Syncer;
use crate::store::Store;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus::{IntCounterVec, Opts};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// The paths this server answers on the data-plane listener.
pub const PATHS: &[&str] = &[
    "/oauth/token",
    "/oauth/authorize",
    "/oauth/revoke",
    "/oauth/introspect",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
];

/// The largest body the OAuth endpoints read (SPEC section 9).
pub const MAX_BODY: usize = 64 * 1024;

/// The caller's address, as the data plane worked it out; set on every bridged request.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

pub struct OAuthServer {
    pub config: OAuthConfig,
    audience: String,
    pub keys: Arc<SigningKeys>,
    pub syncer: Arc<Syncer>,
    pub catalog: Catalog,
    key_prefix: String,
    environments: Environments,
    pub verifier: Arc<TokenVerifier>,
    tokens_issued: IntCounterVec,
}

impl OAuthServer {
    pub fn new(
        config: &Config,
        keys: Arc<SigningKeys>,
        syncer: Arc<Syncer>,
        verifier: Arc<TokenVerifier>,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let tokens_issued = IntCounterVec::new(
            Opts::new(
                "tollgate_tokens_issued_total",
                "Access tokens issued, by grant type.",
            ),
            &["grant"],
        )
        .expect("static metric definition");
        // Known label values are exported at 0 before first use.
        for grant in ["client_credentials", "authorization_code", "refresh_token"] {
            tokens_issued.with_label_values(&[grant]);
        }
        metrics.register(Box::new(tokens_issued.clone()));
        OAuthServer {
            audience: config
                .oauth
                .audience
                .clone()
                .unwrap_or_else(|| config.oauth.issuer.clone()),
            config: config.oauth.clone(),
            keys,
            syncer,
            catalog: Catalog::new(&config.permissions),
            key_prefix: config.key_prefix.clone(),
            environments: config.accepted_environments(),
            verifier,
            tokens_issued,
        }
    }

    fn store(&self) -> Result<&Store, params::OAuthError> {
        self.syncer
            .store()
            .ok_or_else(params::OAuthError::unavailable)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer.trim_end_matches('/'))
    }
}

pub fn router(server: Arc<OAuthServer>) -> Router {
    Router::new()
        .route("/oauth/token", post(grants::token))
        .route(
            "/oauth/authorize",
            get(authorize::page).post(authorize::submit),
        )
        .route("/oauth/revoke", post(grants::revoke))
        .route("/oauth/introspect", post(grants::introspect))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(method_not_allowed)
        .with_state(server)
}

/// Every refusal is JSON, a wrong method too (in the RFC 6749 error form of these
/// endpoints); axum keeps the `Allow` header.
async fn method_not_allowed(method: axum::http::Method) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({
            "error": "invalid_request",
            "error_description": format!("this endpoint does not take {method}"),
        })),
    )
        .into_response()
}

/// RFC 8414 metadata; `issuer` is the configured string, byte for byte.
async fn metadata(
    axum::extract::State(server): axum::extract::State<Arc<OAuthServer>>,
) -> Response {
    let all: Vec<String> = server.config_scopes();
    let body = json!({
        "issuer": server.config.issuer,
        "authorization_endpoint": server.endpoint("/oauth/authorize"),
        "token_endpoint": server.endpoint("/oauth/token"),
        "jwks_uri": server.endpoint("/.well-known/jwks.json"),
        "revocation_endpoint": server.endpoint("/oauth/revoke"),
        "introspection_endpoint": server.endpoint("/oauth/introspect"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": all,
        "token_endpoint_auth_signing_alg_values_supported": [format!("{:?}", server.keys.algorithm())],
    });
    cacheable(Json(body).into_response())
}

async fn jwks(axum::extract::State(server): axum::extract::State<Arc<OAuthServer>>) -> Response {
    cacheable(Json(server.keys.jwks().clone()).into_response())
}

fn cacheable(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

impl OAuthServer {
    fn config_scopes(&self) -> Vec<String> {
        let everything = self.catalog.all();
        self.catalog
            .names(&everything)
            .map(|n| n.to_string())
            .collect()
    }
}
