//! The console's other pages: OAuth apps and users of the authorization-code flow, the
//! organization settings, operators, admin tokens and the audit log.

use super::page::{alert, page, refused, respond, sort_header, sort_rows, time};
use super::{sign_in_first, Console, Fields, Operator, Reply};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/apps", get(apps).post(create_app))
        .route(
            "/console/apps/{id}/delete",
            get(confirm_delete_app).post(delete_app),
        )
        .route("/console/users", get(users).post(create_user))
        .route("/console/users/{id}/disable", post(disable_user))
        .route("/console/users/{id}/enable", post(enable_user))
        .route("/console/settings", get(settings).post(save_settings))
        .route("/console/operators", get(operators).post(create_operator))
        .route("/console/operators/{id}/disable", post(disable_operator))
        .route("/console/operators/{id}/enable", post(enable_operator))
        .route("/console/tokens", get(tokens).post(create_token))
        .route("/console/tokens/{id}/revoke", post(revoke_token))
        .route("/console/audit", get(audit))
}

fn now() -> i64 {
    crate::clock::now_ms()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn items(reply: &Reply) -> Vec<Value> {
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

/// `?error=...&cursor=...` of a list page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    error: Option<String>,
    cursor: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    sort: Option<String>,
}

fn with_error(path: &str, reply: &Reply) -> Response {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let message = reply.message();
    query.append_pair(
        "error",
        message.strip_prefix("request body: ").unwrap_or(message),
    );
    Redirect::to(&format!("{path}?{}", query.finish())).into_response()
}

/// A page of a list, or the refusal when the operator may not read it.
async fn list_page(
    console: &Console,
    operator: &Operator,
    permission: &str,
    path: &str,
    cursor: Option<&str>,
) -> Result<Reply, Response> {
    if !operator.may(permission) {
        return Err(refused(
            operator,
            &format!("This page needs the {permission} permission."),
        ));
    }
    let mut query = format!("{path}?limit=50");
    if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
        query.push_str(&format!("&cursor={cursor}"));
    }
    let reply = console
        .call(operator, "GET", &query, None, None, None)
        .await;
    if reply.ok() {
        Ok(reply)
    } else {
        Err(refused(operator, reply.message()))
    }
}

fn next_page(reply: &Reply, base: &str) -> Markup {
    html! {
        nav.pages aria-label="Pages" {
            @if let Some(next) = reply.body["next_cursor"].as_str() {
                a href=(format!("{base}?cursor={next}")) { "Next page" }
            }
        }
    }
}

/// A form with one button, for an action on one row.
fn button_form(operator: &Operator, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf_token" value=(operator.csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A change made from a list row: back to the list, with the refusal if there was one.
async fn row_action(
    console: &Console,
    headers: &HeaderMap,
    body: &Bytes,
    method: &str,
    api_path: &str,
    request: Value,
    page_path: &str,
) -> Response {
    let Some(operator) = Operator::signed_in(console, headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(body);
    let reply = console
        .call(
            &operator,
            method,
            api_path,
            Some(request).filter(|r| !r.is_null()),
            fields.get("csrf_token"),
            None,
        )
        .await;
    match reply.status {
        status if status.is_success() => Redirect::to(page_path).into_response(),
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => with_error(page_path, &reply),
    }
}

/// The secret of a new app or token, shown once.
fn shown_once(
    operator: &Operator,
    title: &str,
    current: &str,
    rows: &[(&str, String)],
    secret_label: &str,
    secret: &str,
) -> Response {
    let body = html! {
        h1 { (title) }
        div.secret {
            p { "Copy the secret now: " strong { "it will not be shown again." } }
            dl {
                @for (label, value) in rows {
                    dt { (label) } dd { code { (value) } }
                }
                dt { (secret_label) }
                dd { code #secret { (secret) } " " button.copy type="button" data-copy="secret" { "Copy" } }
            }
            p { a href=(current) { "Done" } }
        }
    };
    respond(StatusCode::CREATED, page(operator, title, current, body))
}

async fn apps(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let reply = match list_page(
        &console,
        &operator,
        "clients:read",
        "/clients",
        query.cursor.as_deref(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(refusal) => return refusal,
    };
    let mut apps = items(&reply);
    let sort = query.sort.as_deref();
    sort_rows(
        &mut apps,
        sort,
        &[
            ("name", "name"),
            ("type", "type"),
            ("created", "created_at"),
        ],
    );
    let header = |column: &str, label: &str| sort_header("/console/apps", sort, column, label);
    let body = html! {
        h1 { "OAuth apps" }
        (alert(query.error.as_deref()))
        @if apps.is_empty() { p.empty { "No apps yet." @if operator.may("clients:write") { " Register one below." } } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { (header("name", "Name")) } th scope="col" { "Client ID" } th scope="col" { (header("type", "Type")) } th scope="col" { "Scopes" } th scope="col" { (header("created", "Created")) } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody { @for app in &apps { tr {
                    td { (text(&app["name"])) }
                    td { code { (text(&app["client_id"])) } }
                    td { (text(&app["type"])) }
                    td { (text(&app["scopes"])) }
                    td { (time(app["created_at"].as_str(), now())) }
                    td { @if !app["deleted_at"].is_null() { span.badge.revoked { "deleted" } }
                         @else if operator.may("clients:write") { a href=(format!("/console/apps/{}/delete", text(&app["client_id"]))) { "Delete" } } }
                } } }
            } }
        }
        (next_page(&reply, "/console/apps"))
        @if operator.may("clients:write") {
            section aria-labelledby="register-title" {
                h2 #register-title { "Register an app" }
                form method="post" action="/console/apps" {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    input type="hidden" name="form_id" value=(crate::auth::base62::random(24));
                    p { label for="app-name" { "Name" } input #app-name type="text" name="name" required; }
                    fieldset { legend { "App type" }
                        p.choice { input #app-confidential type="radio" name="type" value="confidential" checked; label for="app-confidential" { "Confidential (has a secret)" } }
                        p.choice { input #app-public type="radio" name="type" value="public"; label for="app-public" { "Public (PKCE only)" } }
                    }
                    p { label for="app-redirects" { "Redirect URIs" } textarea #app-redirects name="redirect_uris" rows="2" required placeholder="https://app.example.com/callback" {} }
                    fieldset { legend { "Scopes" }
                        @for permission in &console.permissions {
                            @let id = format!("scope-{}", permission.replace(':', "-"));
                            p.choice { input id=(id) type="checkbox" name="scopes" value=(permission); label for=(id) { (permission) } }
                        }
                    }
                    p { button type="submit" { "Register" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "OAuth apps", "/console/apps", body),
    )
}

async fn create_app(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let request = json!({
        "name": fields.get("name").unwrap_or_default(),
        "type": fields.get("type").unwrap_or("confidential"),
        "redirect_uris": fields.lines("redirect_uris"),
        "scopes": fields.all("scopes"),
    });
    let reply = console
        .call(
            &operator,
            "POST",
            "/clients",
            Some(request),
            fields.get("csrf_token"),
            fields.get("form_id"),
        )
        .await;
    match reply.status {
        StatusCode::CREATED => {
            let client_id = text(&reply.body["client_id"]);
            match reply.body["client_secret"].as_str() {
                Some(secret) if !reply.replayed() => shown_once(
                    &operator,
                    "Your new app",
                    "/console/apps",
                    &[("Client ID", client_id)],
                    "Client Secret",
                    secret,
                ),
                _ => Redirect::to("/console/apps").into_response(),
            }
        }
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => with_error("/console/apps", &reply),
    }
}

async fn confirm_delete_app(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let body = html! {
        h1 { "Delete app " code { (id) } "?" }
        div.confirm {
            p { strong { "This cannot be undone." } " The app's tokens stop working at once, and it can sign nobody in again." }
            form method="post" action=(format!("/console/apps/{id}/delete")) {
                input type="hidden" name="csrf_token" value=(operator.csrf);
                button.danger type="submit" { "Confirm deletion" } " " a.cancel href="/console/apps" { "Cancel" }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Delete an app", "/console/apps", body),
    )
}

async fn delete_app(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    row_action(
        &console,
        &headers,
        &body,
        "DELETE",
        &format!("/clients/{id}"),
        Value::Null,
        "/console/apps",
    )
    .await
}

async fn users(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let reply = match list_page(
        &console,
        &operator,
        "users:read",
        "/users",
        query.cursor.as_deref(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(refusal) => return refusal,
    };
    let mut users = items(&reply);
    let sort = query.sort.as_deref();
    sort_rows(
        &mut users,
        sort,
        &[
            ("username", "username"),
            ("status", "disabled"),
            ("created", "created_at"),
        ],
    );
    let header = |column: &str, label: &str| sort_header("/console/users", sort, column, label);
    let body = html! {
        h1 { "Users" }
        p { "The people who sign in to OAuth apps with the authorization-code flow." }
        (alert(query.error.as_deref()))
        @if users.is_empty() { p.empty { "No users yet." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { (header("username", "Username")) } th scope="col" { (header("status", "Status")) } th scope="col" { (header("created", "Created")) } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody { @for user in &users {
                    @let id = text(&user["id"]);
                    @let disabled = user["disabled"].as_bool().unwrap_or(false);
                    tr {
                        td { (text(&user["username"])) }
                        td { @if disabled { span.badge.revoked { "disabled" } } @else { span.badge.active { "active" } } }
                        td { (time(user["created_at"].as_str(), now())) }
                        td { @if operator.may("users:write") {
                            @if disabled { (button_form(&operator, &format!("/console/users/{id}/enable"), "Enable", "")) }
                            @else { (button_form(&operator, &format!("/console/users/{id}/disable"), "Disable", "danger")) }
                        } }
                    }
                } }
            } }
        }
        (next_page(&reply, "/console/users"))
        @if operator.may("users:write") {
            section aria-labelledby="user-title" {
                h2 #user-title { "Create a user" }
                form method="post" action="/console/users" {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    input type="hidden" name="form_id" value=(crate::auth::base62::random(24));
                    p { label for="user-name" { "Username" } input #user-name type="text" name="username" required autocomplete="off"; }
                    p { label for="user-password" { "Password" } input #user-password type="password" name="password" required minlength="12" autocomplete="new-password"; }
                    p { button type="submit" { "Create user" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Users", "/console/users", body),
    )
}

async fn create_user(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let request = json!({"username": fields.get("username").unwrap_or_default(), "password": fields.get("password").unwrap_or_default()});
    row_action(
        &console,
        &headers,
        &body,
        "POST",
        "/users",
        request,
        "/console/users",
    )
    .await
}

async fn disable_user(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    row_action(
        &console,
        &headers,
        &body,
        "PATCH",
        &format!("/users/{id}"),
        json!({"disabled": true}),
        "/console/users",
    )
    .await
}

async fn enable_user(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    row_action(
        &console,
        &headers,
        &body,
        "PATCH",
        &format!("/users/{id}"),
        json!({"disabled": false}),
        "/console/users",
    )
    .await
}

async fn settings(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    if !operator.may("policy:read") {
        return refused(&operator, "This page needs the policy:read permission.");
    }
    let reply = console
        .call(&operator, "GET", "/policy", None, None, None)
        .await;
    let blocked = reply.body["block_legacy_keys"].as_bool().unwrap_or(false);
    let lifetime = text(&reply.body["max_key_lifetime"]);
    let body = html! {
        h1 { "Organization settings" }
        p { "These apply to every key the organization creates or rotates." }
        (alert(query.error.as_deref()))
        @if operator.may("policy:write") {
            form method="post" action="/console/settings" {
                input type="hidden" name="csrf_token" value=(operator.csrf);
                p.choice {
                    input #block_legacy_keys type="checkbox" name="block_legacy_keys" value="true" checked[blocked];
                    label for="block_legacy_keys" { "Block legacy key creation" }
                }
                p {
                    label for="max_key_lifetime" { "Maximum API key lifetime" }
                    input #max_key_lifetime type="text" name="max_key_lifetime" value=(lifetime) placeholder="90d" aria-describedby="lifetime-help";
                    small #lifetime-help { "A duration such as 90d; empty means no limit." }
                }
                p { button type="submit" { "Save" } }
            }
        } @else {
            dl.record {
                dt { "Block legacy key creation" } dd { (if blocked { "Yes" } else { "No" }) }
                dt { "Maximum API key lifetime" } dd { (if lifetime.is_empty() { "None".to_string() } else { lifetime }) }
            }
            p.muted { "Only owners change these." }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Settings", "/console/settings", body),
    )
}

async fn save_settings(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let lifetime = fields
        .get("max_key_lifetime")
        .map_or(Value::Null, |l| json!(l));
    let request = json!({"block_legacy_keys": fields.checked("block_legacy_keys"), "max_key_lifetime": lifetime});
    row_action(
        &console,
        &headers,
        &body,
        "PUT",
        "/policy",
        request,
        "/console/settings",
    )
    .await
}

async fn operators(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let reply = match list_page(
        &console,
        &operator,
        "operators:read",
        "/operators",
        query.cursor.as_deref(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(refusal) => return refusal,
    };
    let mut rows = items(&reply);
    let sort = query.sort.as_deref();
    sort_rows(
        &mut rows,
        sort,
        &[
            ("name", "name"),
            ("email", "email"),
            ("role", "role"),
            ("status", "disabled"),
        ],
    );
    let header = |column: &str, label: &str| sort_header("/console/operators", sort, column, label);
    let body = html! {
        h1 { "Operators" }
        (alert(query.error.as_deref()))
        div.table-wrap { table {
            thead { tr { th scope="col" { (header("name", "Name")) } th scope="col" { (header("email", "Email")) } th scope="col" { (header("role", "Role")) } th scope="col" { (header("status", "Status")) } th scope="col" { span.visually-hidden { "Actions" } } } }
            tbody { @for row in &rows {
                @let id = text(&row["id"]);
                @let disabled = row["disabled"].as_bool().unwrap_or(false);
                tr {
                    td { (text(&row["name"])) } td { (text(&row["email"])) } td { (text(&row["role"])) }
                    td { @if disabled { span.badge.revoked { "disabled" } } @else { span.badge.active { "active" } } }
                    td { @if operator.may("operators:write") {
                        @if disabled { (button_form(&operator, &format!("/console/operators/{id}/enable"), "Enable", "")) }
                        @else { (button_form(&operator, &format!("/console/operators/{id}/disable"), "Disable", "danger")) }
                    } }
                }
            } }
        } }
        (next_page(&reply, "/console/operators"))
        @if operator.may("operators:write") {
            section aria-labelledby="operator-title" {
                h2 #operator-title { "Add an operator" }
                form method="post" action="/console/operators" {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    p { label for="operator-email" { "Email" } input #operator-email type="email" name="email" required; }
                    p { label for="operator-name" { "Name" } input #operator-name type="text" name="name" required; }
                    p { label for="operator-role" { "Role" } select #operator-role name="role" { @for role in &console.operator_roles { option value=(role) { (role) } } } }
                    p { label for="operator-password" { "Password" } input #operator-password type="password" name="password" required minlength="12" autocomplete="new-password"; }
                    p { button type="submit" { "Add operator" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Operators", "/console/operators", body),
    )
}

async fn create_operator(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let request = json!({
        "email": fields.get("email").unwrap_or_default(), "name": fields.get("name").unwrap_or_default(),
        "role": fields.get("role").unwrap_or_default(), "password": fields.get("password").unwrap_or_default(),
    });
    row_action(
        &console,
        &headers,
        &body,
        "POST",
        "/operators",
        request,
        "/console/operators",
    )
    .await
}

async fn disable_operator(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    row_action(
        &console,
        &headers,
        &body,
        "PATCH",
        &format!("/operators/{id}"),
        json!({"disabled": true}),
        "/console/operators",
    )
    .await
}

async fn enable_operator(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    row_action(
        &console,
        &headers,
        &body,
        "PATCH",
        &format!("/operators/{id}"),
        json!({"disabled": false}),
        "/console/operators",
    )
    .await
}

async fn tokens(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let reply = match list_page(
        &console,
        &operator,
        "tokens:read",
        "/tokens",
        query.cursor.as_deref(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(refusal) => return refusal,
    };
    let mut rows = items(&reply);
    let sort = query.sort.as_deref();
    sort_rows(
        &mut rows,
        sort,
        &[
            ("name", "name"),
            ("expires", "expires_at"),
            ("last_used", "last_used_at"),
        ],
    );
    let header = |column: &str, label: &str| sort_header("/console/tokens", sort, column, label);
    let body = html! {
        h1 { "Admin tokens" }
        p { "For automation: each holds a role, and never more than its creator." }
        (alert(query.error.as_deref()))
        @if rows.is_empty() { p.empty { "No tokens yet." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { (header("name", "Name")) } th scope="col" { "Start" } th scope="col" { "Permissions" } th scope="col" { (header("expires", "Expires")) } th scope="col" { (header("last_used", "Last used")) } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody { @for row in &rows { tr {
                    td { (text(&row["name"])) }
                    td { code { (text(&row["start"])) "…" } }
                    td { (text(&row["role"])) @if row["role"].is_null() { (text(&row["permissions"])) } }
                    td { (time(row["expires_at"].as_str(), now())) }
                    td { (time(row["last_used_at"].as_str(), now())) }
                    td { @if !row["revoked_at"].is_null() { span.badge.revoked { "revoked" } }
                         @else if operator.may("tokens:write") { (button_form(&operator, &format!("/console/tokens/{}/revoke", text(&row["id"])), "Revoke", "danger")) } }
                } } }
            } }
        }
        (next_page(&reply, "/console/tokens"))
        @if operator.may("tokens:write") {
            section aria-labelledby="token-title" {
                h2 #token-title { "Create a token" }
                form method="post" action="/console/tokens" {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    input type="hidden" name="form_id" value=(crate::auth::base62::random(24));
                    p { label for="token-name" { "Name" } input #token-name type="text" name="name" required placeholder="ci-deploy"; }
                    p { label for="token-role" { "Role" } select #token-role name="role" { @for role in &console.operator_roles { option value=(role) { (role) } } } }
                    p { label for="token-expires" { "Expiry date" } input #token-expires type="date" name="expires_on"; }
                    p { button type="submit" { "Create token" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Admin tokens", "/console/tokens", body),
    )
}

async fn create_token(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let mut request = json!({"name": fields.get("name").unwrap_or_default(), "role": fields.get("role").unwrap_or_default()});
    if let Some(date) = fields.get("expires_on") {
        request["expires_at"] = json!(format!("{date}T00:00:00Z"));
    }
    let reply = console
        .call(
            &operator,
            "POST",
            "/tokens",
            Some(request),
            fields.get("csrf_token"),
            fields.get("form_id"),
        )
        .await;
    match reply.status {
        StatusCode::CREATED => match reply.body["token"].as_str() {
            Some(secret) if !reply.replayed() => shown_once(
                &operator,
                "Your new admin token",
                "/console/tokens",
                &[("Name", text(&reply.body["name"]))],
                "Token",
                secret,
            ),
            _ => Redirect::to("/console/tokens").into_response(),
        },
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => with_error("/console/tokens", &reply),
    }
}

async fn revoke_token(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    row_action(
        &console,
        &headers,
        &body,
        "POST",
        &format!("/tokens/{id}/revoke"),
        json!({}),
        "/console/tokens",
    )
    .await
}

async fn audit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    if !operator.may("audit:read") {
        return refused(&operator, "This page needs the audit:read permission.");
    }
    let filters = {
        let mut filters = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("actor", &query.actor),
            ("action", &query.action),
            ("target", &query.target),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                filters.append_pair(name, value);
            }
        }
        filters.finish()
    };
    let mut path = format!("/audit?limit=50&{filters}");
    if let Some(cursor) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let reply = console
        .call(
            &operator,
            "GET",
            path.trim_end_matches('&'),
            None,
            None,
            None,
        )
        .await;
    let mut rows = items(&reply);
    sort_rows(
        &mut rows,
        query.sort.as_deref(),
        &[("action", "action"), ("target", "target")],
    );
    let base = format!("/console/audit?{filters}");
    let header =
        |column: &str, label: &str| sort_header(&base, query.sort.as_deref(), column, label);
    let body = html! {
        h1 { "Audit log" }
        (alert((!reply.ok()).then(|| reply.message())))
        form.filters method="get" action="/console/audit" role="search" {
            p { label for="audit-actor" { "Actor" } input #audit-actor type="text" name="actor" value=[query.actor.as_deref()] placeholder="op_… or bootstrap"; }
            p { label for="audit-action" { "Action" } input #audit-action type="text" name="action" value=[query.action.as_deref()] placeholder="key.revoke"; }
            p { label for="audit-target" { "Target" } input #audit-target type="text" name="target" value=[query.target.as_deref()] placeholder="key_…"; }
            p { button type="submit" { "Filter" } }
        }
        @if rows.is_empty() { p.empty { "No entries." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { (header("action", "Action")) } th scope="col" { (header("target", "Target")) } } }
                tbody { @for row in &rows { tr {
                    td { (time(row["at"].as_str(), now())) }
                    td { (text(&row["actor"]["name"])) " " span.muted { "(" (text(&row["actor"]["kind"])) ")" } }
                    td { code { (text(&row["action"])) } }
                    td { code { (text(&row["target"])) } }
                } } }
            } }
        }
        nav.pages aria-label="Pages" {
            @if let Some(next) = reply.body["next_cursor"].as_str() {
                a href=(format!("/console/audit?{filters}&cursor={next}")) { "Next page" }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Audit log", "/console/audit", body),
    )
}
