//! Every admin endpoint in one table: its method and path, the permission it needs, the
//! query parameters it takes, its handler and what the OpenAPI document says of it. The
//! router is built from this table (nothing is routed without an entry, so nothing without
//! a permission), the OpenAPI document is written from it, and the check of every request
//! (credential, permission, CSRF, query) reads it.

use super::endpoint::{Access, Doc, Endpoint};
use super::principal::{authenticate, Principal};
use super::{
    analytics, credits, keys, me, oauth_apps, operators, owners, policy, tokens, webhooks,
    AdminError, AdminState,
};
use crate::admin_access::Permission;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use std::sync::Arc;

const PAGE: &[&str] = &["limit", "cursor"];

const fn doc(summary: &'static str, body: Option<&'static str>, ok: (u16, &'static str)) -> Doc {
    Doc {
        summary,
        body,
        ok,
        idempotent: false,
    }
}

const fn idempotent(mut doc: Doc) -> Doc {
    doc.idempotent = true;
    doc
}

use Access::{Needs, Public, SignedIn};
use Permission as P;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "POST",
        path: "/keys",
        access: Needs(P::KeysWrite),
        query: &[],
        handler: || post(keys::create),
        doc: idempotent(doc(
            "Create a key; the secret is in `key`, once",
            Some("CreateKey"),
            (201, "KeyWithSecret"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/keys",
        access: Needs(P::KeysRead),
        query: &["limit", "cursor", "status", "type", "name"],
        handler: || get(keys::list),
        doc: doc("List keys, newest first (never their secrets)", None, (200, "KeyPage")),
    },
    Endpoint {
        method: "GET",
        path: "/keys/{id}",
        access: Needs(P::KeysRead),
        query: &[],
        handler: || get(keys::show),
        doc: doc("Show a key", None, (200, "Key")),
    },
    Endpoint {
        method: "PATCH",
        path: "/keys/{id}",
        access: Needs(P::KeysWrite),
        query: &[],
        handler: || patch(keys::update),
        doc: doc(
            "Change name, permissions, allowlist, rate limit or metadata",
            Some("PatchKey"),
            (200, "Key"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/keys/{id}/rotate",
        access: Needs(P::KeysRotate),
        query: &[],
        handler: || post(keys::rotate),
        doc: idempotent(doc(
            "Issue a new secret; the old one stops now or after `grace`",
            Some("RotateKey"),
            (200, "KeyWithSecret"),
        )),
    },
    Endpoint {
        method: "POST",
        path: "/keys/{id}/revoke",
        access: Needs(P::KeysRevoke),
        query: &[],
        handler: || post(keys::revoke),
        doc: idempotent(doc("Revoke a key; final", Some("Empty"), (200, "Key"))),
    },
    Endpoint {
        method: "POST",
        path: "/keys/{id}/credits",
        access: Needs(P::KeysWrite),
        query: &[],
        handler: || post(credits::key),
        doc: doc(
            "Set, increment or decrement the key's credits, from the balance spent so far",
            Some("CreditOp"),
            (200, "Key"),
        ),
    },
    Endpoint {
        method: "GET",
        path: "/keys/{id}/usage",
        access: Needs(P::KeysRead),
        query: &["days", "hours"],
        handler: || get(keys::usage),
        doc: doc(
            "Requests per UTC day and per UTC hour by outcome, and last_used_at",
            None,
            (200, "Usage"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/clients",
        access: Needs(P::ClientsWrite),
        query: &[],
        handler: || post(oauth_apps::create_client),
        doc: idempotent(doc(
            "Register an OAuth app; a confidential app's `client_secret` is shown once",
            Some("CreateClient"),
            (201, "ClientWithSecret"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/clients",
        access: Needs(P::ClientsRead),
        query: PAGE,
        handler: || get(oauth_apps::list_clients),
        doc: doc("List OAuth apps, newest first", None, (200, "ClientPage")),
    },
    Endpoint {
        method: "GET",
        path: "/clients/{id}",
        access: Needs(P::ClientsRead),
        query: &[],
        handler: || get(oauth_apps::show_client),
        doc: doc("Show an app", None, (200, "Client")),
    },
    Endpoint {
        method: "DELETE",
        path: "/clients/{id}",
        access: Needs(P::ClientsWrite),
        query: &[],
        handler: || delete(oauth_apps::delete_client),
        doc: doc("Delete an app; its tokens stop working", None, (200, "Client")),
    },
    Endpoint {
        method: "POST",
        path: "/users",
        access: Needs(P::UsersWrite),
        query: &[],
        handler: || post(oauth_apps::create_user),
        doc: idempotent(doc(
            "Create a user of the authorization-code flow (password stored as argon2id)",
            Some("CreateUser"),
            (201, "User"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/users",
        access: Needs(P::UsersRead),
        query: PAGE,
        handler: || get(oauth_apps::list_users),
        doc: doc("List users, newest first", None, (200, "UserPage")),
    },
    Endpoint {
        method: "PATCH",
        path: "/users/{id}",
        access: Needs(P::UsersWrite),
        query: &[],
        handler: || patch(oauth_apps::update_user),
        doc: doc(
            "Change a user's password or disable them; either ends their grants",
            Some("PatchUser"),
            (200, "User"),
        ),
    },
    Endpoint {
        method: "GET",
        path: "/policy",
        access: Needs(P::PolicyRead),
        query: &[],
        handler: || get(policy::show),
        doc: doc("The organisation-wide key policy", None, (200, "Policy")),
    },
    Endpoint {
        method: "PUT",
        path: "/policy",
        access: Needs(P::PolicyWrite),
        query: &[],
        handler: || put(policy::replace),
        doc: doc(
            "Change the policy; fields left out keep their value",
            Some("Policy"),
            (200, "Policy"),
        ),
    },
    Endpoint {
        method: "GET",
        path: "/audit",
        access: Needs(P::AuditRead),
        query: &["limit", "cursor", "actor", "action", "target", "from", "to"],
        handler: || get(policy::audit),
        doc: doc(
            "Every change, newest first: who, what, when, before and after",
            None,
            (200, "AuditPage"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/operators",
        access: Needs(P::OperatorsWrite),
        query: &[],
        handler: || post(operators::create),
        doc: idempotent(doc(
            "Add an operator; the password is never echoed",
            Some("CreateOperator"),
            (201, "Operator"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/operators",
        access: Needs(P::OperatorsRead),
        query: PAGE,
        handler: || get(operators::list),
        doc: doc("List operators, newest first", None, (200, "OperatorPage")),
    },
    Endpoint {
        method: "GET",
        path: "/operators/{id}",
        access: Needs(P::OperatorsRead),
        query: &[],
        handler: || get(operators::show),
        doc: doc("Show an operator", None, (200, "Operator")),
    },
    Endpoint {
        method: "PATCH",
        path: "/operators/{id}",
        access: Needs(P::OperatorsWrite),
        query: &[],
        handler: || patch(operators::update),
        doc: doc(
            "Change name, role, disabled or password; a disable or a new password ends the operator's sessions",
            Some("PatchOperator"),
            (200, "Operator"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/tokens",
        access: Needs(P::TokensWrite),
        query: &[],
        handler: || post(tokens::create),
        doc: idempotent(doc(
            "Create an admin token; the secret is in `token`, once",
            Some("CreateToken"),
            (201, "TokenWithSecret"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/tokens",
        access: Needs(P::TokensRead),
        query: PAGE,
        handler: || get(tokens::list),
        doc: doc("List admin tokens, newest first (never their secrets)", None, (200, "TokenPage")),
    },
    Endpoint {
        method: "POST",
        path: "/tokens/{id}/revoke",
        access: Needs(P::TokensWrite),
        query: &[],
        handler: || post(tokens::revoke),
        doc: doc("Revoke an admin token; final, on every replica at once", Some("Empty"), (200, "Token")),
    },
    Endpoint {
        method: "GET",
        path: "/analytics",
        access: Needs(P::AnalyticsRead),
        query: &["key_id", "owner_id", "from", "to", "granularity", "group_by"],
        handler: || get(analytics::analytics),
        doc: doc(
            "Request counts by hour or day, for a key, an owner or all; CSV with Accept: text/csv",
            None,
            (200, "AnalyticsPage"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/owners",
        access: Needs(P::OwnersWrite),
        query: &[],
        handler: || post(owners::create),
        doc: idempotent(doc(
            "Add an owner: a customer whose keys share its rate limit",
            Some("CreateOwner"),
            (201, "Owner"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/owners",
        access: Needs(P::OwnersRead),
        query: &["limit", "cursor", "external_id"],
        handler: || get(owners::list),
        doc: doc("List owners, newest first", None, (200, "OwnerPage")),
    },
    Endpoint {
        method: "GET",
        path: "/owners/{id}",
        access: Needs(P::OwnersRead),
        query: &[],
        handler: || get(owners::show),
        doc: doc("Show an owner", None, (200, "Owner")),
    },
    Endpoint {
        method: "PATCH",
        path: "/owners/{id}",
        access: Needs(P::OwnersWrite),
        query: &[],
        handler: || patch(owners::update),
        doc: doc(
            "Change name, external_id, rate limit or metadata",
            Some("PatchOwner"),
            (200, "Owner"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/owners/{id}/credits",
        access: Needs(P::OwnersWrite),
        query: &[],
        handler: || post(credits::owner),
        doc: doc(
            "Set, increment or decrement the owner's credits, from the balance spent so far",
            Some("CreditOp"),
            (200, "Owner"),
        ),
    },
    Endpoint {
        method: "GET",
        path: "/owners/{id}/keys",
        access: Needs(P::OwnersRead),
        query: PAGE,
        handler: || get(owners::keys),
        doc: doc("The owner's keys, newest first", None, (200, "KeyPage")),
    },
    Endpoint {
        method: "POST",
        path: "/webhooks",
        access: Needs(P::WebhooksWrite),
        query: &[],
        handler: || post(webhooks::create),
        doc: idempotent(doc(
            "Add a webhook endpoint; its signing `secret` is shown once",
            Some("CreateWebhook"),
            (201, "WebhookWithSecret"),
        )),
    },
    Endpoint {
        method: "GET",
        path: "/webhooks",
        access: Needs(P::WebhooksRead),
        query: PAGE,
        handler: || get(webhooks::list),
        doc: doc("List webhook endpoints, newest first", None, (200, "WebhookPage")),
    },
    Endpoint {
        method: "GET",
        path: "/webhooks/{id}",
        access: Needs(P::WebhooksRead),
        query: &[],
        handler: || get(webhooks::show),
        doc: doc("Show a webhook endpoint", None, (200, "Webhook")),
    },
    Endpoint {
        method: "PATCH",
        path: "/webhooks/{id}",
        access: Needs(P::WebhooksWrite),
        query: &[],
        handler: || patch(webhooks::update),
        doc: doc(
            "Change url, events, description or disabled",
            Some("PatchWebhook"),
            (200, "Webhook"),
        ),
    },
    Endpoint {
        method: "DELETE",
        path: "/webhooks/{id}",
        access: Needs(P::WebhooksWrite),
        query: &[],
        handler: || delete(webhooks::delete),
        doc: doc(
            "Delete a webhook endpoint and its deliveries",
            None,
            (200, "WebhookDeleted"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/webhooks/{id}/rotate-secret",
        access: Needs(P::WebhooksWrite),
        query: &[],
        handler: || post(webhooks::rotate_secret),
        doc: doc(
            "A new signing secret, shown once; the old one also signs for 24 h",
            Some("Empty"),
            (200, "WebhookWithSecret"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/webhooks/{id}/test",
        access: Needs(P::WebhooksWrite),
        query: &[],
        handler: || post(webhooks::test),
        doc: doc(
            "Enqueue a webhook.test event for this endpoint, whatever its events filter",
            Some("Empty"),
            (202, "TestEvent"),
        ),
    },
    Endpoint {
        method: "GET",
        path: "/webhooks/{id}/deliveries",
        access: Needs(P::WebhooksRead),
        query: PAGE,
        handler: || get(webhooks::deliveries),
        doc: doc(
            "The endpoint's deliveries, newest first: attempts, last status and error, state",
            None,
            (200, "DeliveryPage"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/webhooks/{id}/deliveries/{delivery_id}/retry",
        access: Needs(P::WebhooksWrite),
        query: &[],
        handler: || post(webhooks::retry),
        doc: doc("Try a failed delivery again now", Some("Empty"), (200, "Delivery")),
    },
    Endpoint {
        method: "GET",
        path: "/events",
        access: Needs(P::WebhooksRead),
        query: PAGE,
        handler: || get(webhooks::events),
        doc: doc(
            "Every event, oldest first, after the cursor; NDJSON with Accept: application/x-ndjson",
            None,
            (200, "EventPage"),
        ),
    },
    Endpoint {
        method: "POST",
        path: "/session",
        access: Public,
        query: &[],
        handler: || post(me::sign_in),
        doc: doc(
            "Sign in: sets the tollgate_session cookie and returns the CSRF token",
            Some("SignIn"),
            (200, "Session"),
        ),
    },
    Endpoint {
        method: "DELETE",
        path: "/session",
        access: SignedIn,
        query: &[],
        handler: || delete(me::sign_out),
        doc: doc("Sign out, ending the session in the store", None, (200, "SignedOut")),
    },
    Endpoint {
        method: "GET",
        path: "/me",
        access: SignedIn,
        query: &[],
        handler: || get(me::show),
        doc: doc("Who is calling, and what they may do", None, (200, "Me")),
    },
    Endpoint {
        method: "GET",
        path: "/openapi.json",
        access: Public,
        query: &[],
        handler: || get(|| async { axum::Json(super::openapi::document(ENDPOINTS)) }),
        doc: doc("This document", None, (200, "OpenApi")),
    },
];

/// The routes of the table, for the router under `/admin/v1`.
pub fn router() -> axum::Router<Arc<AdminState>> {
    ENDPOINTS
        .iter()
        .fold(axum::Router::new(), |router, endpoint| {
            router.route(endpoint.path, (endpoint.handler)())
        })
}

/// The endpoint a request was routed to, by method and matched path.
pub fn find(method: &str, path: &str) -> Option<&'static Endpoint> {
    let path = path.strip_prefix("/admin/v1").unwrap_or(path);
    ENDPOINTS
        .iter()
        .find(|endpoint| endpoint.method == method && endpoint.path == path)
}

/// Refuses a query parameter the endpoint does not take, or one given twice, as an unknown
/// or repeated body field is refused.
pub fn check_query(endpoint: &Endpoint, query: Option<&str>) -> Result<(), AdminError> {
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !endpoint.query.contains(&name.as_ref()) {
            let takes = match endpoint.query {
                [] => "no query parameters".to_string(),
                names => names.join(", "),
            };
            return Err(AdminError::InvalidRequest(format!(
                "unknown query parameter \"{name}\"; {} {} takes {takes}",
                endpoint.method, endpoint.path
            )));
        }
        if value.is_empty() {
            return Err(AdminError::InvalidRequest(format!(
                "query parameter \"{name}\" is empty; leave it out instead"
            )));
        }
        if seen.iter().any(|s| *s == name) {
            return Err(AdminError::InvalidRequest(format!(
                "query parameter \"{name}\" is given twice"
            )));
        }
        seen.push(name.into_owned());
    }
    Ok(())
}

const CSRF_HEADER: &str = "x-csrf-token";
const MAX_FORM: usize = 64 * 1024;

/// A state-changing request made with a session cookie must carry the session's CSRF
/// token, as `X-CSRF-Token` or a `csrf_token` form field. The request comes back whole.
async fn check_csrf(principal: &Principal, request: Request) -> Result<Request, AdminError> {
    let Some(session) = &principal.session else {
        return Ok(request);
    };
    if matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS") {
        return Ok(request);
    }
    let matches = |token: &[u8]| crate::auth::api_key::digest(token) == session.csrf_digest;
    if let Some(token) = request.headers().get(CSRF_HEADER) {
        return if matches(token.as_bytes()) {
            Ok(request)
        } else {
            Err(AdminError::CsrfFailed)
        };
    }
    let form = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| {
            t.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    if !form {
        return Err(AdminError::CsrfFailed);
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| AdminError::BodyTooLarge)?;
    let found = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf_token")
        .is_some_and(|(_, token)| matches(token.as_bytes()));
    if !found {
        return Err(AdminError::CsrfFailed);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The check of every routed request against the table: the query, then who is calling and
/// whether they may, then CSRF for a session. Counted by permission and status.
pub async fn checked(
    State(state): State<Arc<AdminState>>,
    path: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(endpoint) = path.and_then(|p| find(request.method().as_str(), p.as_str())) else {
        return next.run(request).await;
    };
    state.syncer.wait_open(state.syncer.deadline()).await;
    let admitted = async {
        check_query(endpoint, request.uri().query())?;
        if endpoint.access == Access::Public {
            return Ok(request);
        }
        let principal = authenticate(&state, request.headers()).await?;
        if let Access::Needs(permission) = endpoint.access {
            if !principal.permissions.contains(permission) {
                return Err(AdminError::Forbidden(permission));
            }
        }
        request = check_csrf(&principal, request).await?;
        request.extensions_mut().insert(principal);
        Ok(request)
    };
    let response = match admitted.await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    };
    state
        .admin_requests
        .with_label_values(&[endpoint.permission_label(), response.status().as_str()])
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let list = find("GET", "/admin/v1/keys").unwrap();
        assert!(check_query(list, Some("limit=5&status=active&type=legacy")).is_ok());
        assert!(check_query(list, None).is_ok());
        let unknown = check_query(list, Some("limti=5")).unwrap_err().to_string();
        assert!(
            unknown.contains("\"limti\"") && unknown.contains("limit, cursor"),
            "{unknown}"
        );
        assert!(check_query(list, Some("limit=5&limit=6")).is_err());
        let show = find("GET", "/keys/{id}").unwrap();
        let none = check_query(show, Some("x=1")).unwrap_err().to_string();
        assert!(none.contains("no query parameters"), "{none}");
    }

    #[test]
    fn every_endpoint_is_listed_once_and_only_the_sign_in_and_this_document_are_open() {
        for (i, endpoint) in ENDPOINTS.iter().enumerate() {
            assert!(
                ENDPOINTS[..i]
                    .iter()
                    .all(|e| (e.method, e.path) != (endpoint.method, endpoint.path)),
                "{} {} twice",
                endpoint.method,
                endpoint.path
            );
        }
        let open: Vec<String> = ENDPOINTS
            .iter()
            .filter(|e| e.access == Access::Public)
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        assert_eq!(open, ["POST /session", "GET /openapi.json"]);
        // The router is built from the table, so building it proves every handler fits.
        let _ = router();
    }
}
