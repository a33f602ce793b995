//! Signing in and out of the console. The sign-in form carries a token of its own (a
//! cookie and a hidden field that must match), since there is no session yet; signing in
//! is `POST /admin/v1/session`, with its throttling and its timing.

use super::page::{bare, respond};
use super::{cookie, Console, Fields, Operator, CSRF_COOKIE};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The sign-in form's own CSRF cookie.
const LOGIN_COOKIE: &str = "tollgate_login_csrf";

fn login_page(status: StatusCode, token: &str, email: &str, error: Option<&str>) -> Response {
    let body = html! {
        div.signin {
            h1 { "Sign in to tollgate" }
            @if let Some(error) = error {
                p.error role="alert" id="signin-error" { (error) }
            }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf_token" value=(token);
                p {
                    label for="email" { "Email" }
                    input #email type="email" name="email" autocomplete="username" required value=(email)
                        aria-describedby=[error.map(|_| "signin-error")];
                }
                p {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                }
                p { button type="submit" { "Sign in" } }
            }
        }
    };
    let mut response = respond(status, bare("Sign in", body));
    let cookie = format!("{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if Operator::signed_in(&console, &headers).await.is_some() {
        return Redirect::to("/console/keys").into_response();
    }
    login_page(StatusCode::OK, &crate::auth::base62::random(32), "", None)
}

pub async fn submit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let email = fields.get("email").unwrap_or_default().to_string();
    let fresh = crate::auth::base62::random(32);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let sent = fields.get("csrf_token").unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
        return login_page(
            StatusCode::FORBIDDEN,
            &fresh,
            &email,
            Some("This form expired or did not come from this console. Please sign in again."),
        );
    }
    let password = fields.get("password").unwrap_or_default();
    let reply = console
        .call_open(
            "POST",
            "/session",
            json!({"email": email, "password": password}),
        )
        .await;
    match reply.status {
        StatusCode::OK => {
            let session = reply.headers.get(header::SET_COOKIE).cloned();
            let csrf = reply.body["csrf_token"].as_str().unwrap_or_default();
            let mut response = Redirect::to("/console/keys").into_response();
            let headers = response.headers_mut();
            if let Some(session) = session {
                headers.append(header::SET_COOKIE, session);
            }
            let csrf_cookie =
                format!("{CSRF_COOKIE}={csrf}; HttpOnly; SameSite=Strict; Path=/console");
            if let Ok(value) = HeaderValue::from_str(&csrf_cookie) {
                headers.append(header::SET_COOKIE, value);
            }
            response
        }
        StatusCode::TOO_MANY_REQUESTS => {
            let seconds: u64 = reply
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(900);
            let minutes = seconds.div_ceil(60);
            let message = format!(
                "Too many failed sign-ins for this email. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let mut response = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &fresh,
                &email,
                Some(&message),
            );
            if let Some(retry) = reply.headers.get(header::RETRY_AFTER) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry.clone());
            }
            response
        }
        StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => login_page(
            StatusCode::UNAUTHORIZED,
            &fresh,
            &email,
            Some("Wrong email or password."),
        ),
        _ => login_page(reply.status, &fresh, &email, Some(reply.message())),
    }
}

pub async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    if let Some(operator) = Operator::signed_in(&console, &headers).await {
        let reply = console
            .call(
                &operator,
                "DELETE",
                "/session",
                None,
                fields.get("csrf_token"),
                None,
            )
            .await;
        if !reply.ok() {
            return super::page::refused(&operator, reply.message());
        }
    }
    let mut response = Redirect::to("/console/login").into_response();
    let headers = response.headers_mut();
    for clear in [
        format!(
            "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
            crate::admin::principal::SESSION_COOKIE
        ),
        format!("{CSRF_COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0"),
    ] {
        if let Ok(value) = HeaderValue::from_str(&clear) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}
