//! `GET /oauth/authorize` shows a plain, accessible sign-in and consent page;
//! `POST /oauth/authorize` checks it (CSRF, password, PKCE S256) and redirects back with a
//! single-use code. An unknown client or unregistered redirect URI gets an error page and
//! is never redirected to.

use super::params::{OAuthError, Params};
use super::OAuthServer;
use crate::auth::api_key;
use crate::auth::base62;
use crate::auth::password::verify_password;
use crate::clock;
use crate::store::records::{ClientRecord, Grant};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

const CSRF_COOKIE: &str = "tg_csrf";

/// A checked authorization request.
struct AuthRequest {
    app: ClientRecord,
    redirect_uri: String,
    state: Option<String>,
    scope: String,
    code_challenge: String,
}

/// Either an error page (nothing trustworthy to redirect to) or an error redirect.
enum Refusal {
    Page(StatusCode, String),
    Redirect(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Page(status, message) => page_response(status, &error_page(&message), None),
            Refusal::Redirect(location) => redirect(&location),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `redirect_uri` with `params` added to its query.
fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in params {
                    query.append_pair(name, value);
                }
            }
            url.to_string()
        }
        Err(_) => redirect_uri.to_string(),
    }
}

fn error_redirect(request: &AuthRequest, error: &str, description: &str) -> Refusal {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = &request.state {
        params.push(("state", state));
    }
    Refusal::Redirect(with_query(&request.redirect_uri, &params))
}

/// Checks the request in the order RFC 6749 section 4.1.2.1 asks: client and redirect URI
/// first (errors shown here), then the rest (errors sent back to the client).
async fn check(server: &OAuthServer, params: &Params) -> Result<AuthRequest, Refusal> {
    let page = |message: &str| Refusal::Page(StatusCode::BAD_REQUEST, message.to_string());
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("client_id is missing."))?;
    let store = server.store().map_err(|_| {
        Refusal::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is unavailable; try again shortly.".into(),
        )
    })?;
    let app = match store.get_client(client_id).await {
        Ok(app) if app.deleted_at.is_none() => app,
        _ => return Err(page("This application is not registered.")),
    };
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| page("redirect_uri is missing."))?;
    if !app
        .redirect_uris
        .iter()
        .any(|registered| registered == redirect_uri)
    {
        return Err(page(
            "The redirect URI is not registered for this application.",
        ));
    }
    let mut request = AuthRequest {
        redirect_uri: redirect_uri.to_string(),
        state: params.get("state").map(str::to_string),
        scope: String::new(),
        code_challenge: String::new(),
        app,
    };
    if params.get("response_type") != Some("code") {
        return Err(error_redirect(
            &request,
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let challenge = params.get("code_challenge");
    let method = params.get("code_challenge_method");
    let Some(challenge) = challenge else {
        return Err(error_redirect(
            &request,
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    if method != Some("S256") {
        return Err(error_redirect(
            &request,
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    let well_formed = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(error_redirect(
            &request,
            "invalid_request",
            "code_challenge must be a base64url SHA-256",
        ));
    }
    request.code_challenge = challenge.to_string();
    request.scope = match server.narrow(params.get("scope"), &request.app.scopes) {
        Ok(scope) => scope,
        Err(error) => return Err(error_redirect(&request, error.code(), error.description())),
    };
    Ok(request)
}

pub async fn page(State(server): State<Arc<OAuthServer>>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::from_query(query.as_deref()) {
        Ok(params) => params,
        Err(error) => {
            return Refusal::Page(StatusCode::BAD_REQUEST, error.description().to_string())
                .into_response()
        }
    };
    match check(&server, &params).await {
        Ok(request) => {
            let csrf = base62::random(32);
            let html = form(&request, &csrf, None);
            page_response(StatusCode::OK, &html, Some(&csrf))
        }
        Err(refusal) => refusal.into_response(),
    }
}

pub async fn submit(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::from_body(&HeaderMap::new(), &body) {
        Ok(params) => params,
        Err(error) => {
            return Refusal::Page(StatusCode::BAD_REQUEST, error.description().to_string())
                .into_response()
        }
    };
    let request = match check(&server, &params).await {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let cookie = csrf_cookie(&headers);
    let sent = params.get("csrf").unwrap_or_default();
    let csrf_ok = cookie
        .as_deref()
        .is_some_and(|c| !sent.is_empty() && bool::from(c.as_bytes().ct_eq(sent.as_bytes())));
    if !csrf_ok {
        return Refusal::Page(
            StatusCode::FORBIDDEN,
            "The form expired or was not sent from this page. Go back and try again.".into(),
        )
        .into_response();
    }
    if params.get("decision") != Some("allow") {
        return error_redirect(&request, "access_denied", "the user denied the request")
            .into_response();
    }
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default().to_string();
    let user = match server.store() {
        Ok(store) => store.user_by_name(username).await.ok().flatten(),
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    // An unknown user costs the same hashing as a wrong password.
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(user) if verified && !user.disabled => user,
        _ => {
            let html = form(
                &request,
                params.get("csrf").unwrap_or_default(),
                Some("Wrong username or password."),
            );
            return page_response(StatusCode::UNAUTHORIZED, &html, None);
        }
    };
    let now = clock::now_ms();
    let code = format!("tgc_{}", base62::random(43));
    let grant = Grant {
        grant_id: format!("gr_{}", base62::random(20)),
        client_id: request.app.client_id.clone(),
        user_id: user.id.clone(),
        scope: request.scope.clone(),
        expires_at: now + server.config.auth_code_ttl.as_millis() as i64,
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
    };
    let stored = match server.store() {
        Ok(store) => store
            .insert_code(api_key::digest(code.as_bytes()), &grant)
            .await
            .map_err(OAuthError::from),
        Err(error) => Err(error),
    };
    if stored.is_err() {
        return Refusal::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is unavailable; try again shortly.".into(),
        )
        .into_response();
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &request.state {
        params.push(("state", state));
    }
    redirect(&with_query(&request.redirect_uri, &params))
}

fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value.to_string())
}

fn page_response(status: StatusCode, html: &str, csrf: Option<&str>) -> Response {
    let mut response = (status, Html(html.to_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    if let Some(csrf) = csrf {
        let cookie =
            format!("{CSRF_COOKIE}={csrf}; Path=/oauth/authorize; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;line-height:1.5}\
label{display:block;margin-top:1rem}input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem}\
button{margin-top:1.5rem;margin-right:.5rem;padding:.5rem 1rem;font-size:1rem}.error{color:#a40000}";

fn error_page(message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in error</title>\
         <style>{STYLE}</style></head><body><main><h1>This sign-in request cannot continue</h1>\
         <p role=\"alert\" class=\"error\">{}</p></main></body></html>",
        escape(message)
    )
}

fn form(request: &AuthRequest, csrf: &str, error: Option<&str>) -> String {
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let mut fields = vec![
        hidden("response_type", "code"),
        hidden("client_id", &request.app.client_id),
        hidden("redirect_uri", &request.redirect_uri),
        hidden("scope", &request.scope),
        hidden("code_challenge", &request.code_challenge),
        hidden("code_challenge_method", "S256"),
        hidden("csrf", csrf),
    ];
    if let Some(state) = &request.state {
        fields.push(hidden("state", state));
    }
    let scopes: String = request
        .scope
        .split_whitespace()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let error = error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in</title>\
         <style>{STYLE}</style></head><body><main>\
         <h1>Sign in to allow {app}</h1>{error}\
         <p><strong>{app}</strong> asks for:</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"/oauth/authorize\">{fields}\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\
         </form></main></body></html>",
        app = escape(&request.app.name),
        fields = fields.join(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_registered_query() {
        assert_eq!(
            with_query(
                "https://app.example/cb?x=1",
                &[("code", "c"), ("state", "a b")]
            ),
            "https://app.example/cb?x=1&code=c&state=a+b"
        );
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
