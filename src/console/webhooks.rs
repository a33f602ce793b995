//! The console's webhook pages: endpoints (add one, its secret shown once), and each
//! endpoint's deliveries with their attempts, status and error, a retry for the failed,
//! a test event, secret rotation, pause and delete. Every action is the admin API's.

use super::page::{alert, back, page, refused, respond, time};
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
        .route("/console/webhooks", get(list).post(create))
        .route("/console/webhooks/{id}", get(detail))
        .route("/console/webhooks/{id}/test", post(send_test))
        .route("/console/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/console/webhooks/{id}/disable", post(disable))
        .route("/console/webhooks/{id}/enable", post(enable))
        .route("/console/webhooks/{id}/delete", post(delete))
        .route(
            "/console/webhooks/{id}/deliveries/{delivery}/retry",
            post(retry),
        )
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    error: Option<String>,
    notice: Option<String>,
    cursor: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn now() -> i64 {
    crate::clock::now_ms()
}

fn notice(message: Option<&str>) -> Markup {
    html! { @if let Some(message) = message { p.notice role="status" { (message) } } }
}

async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    if !operator.may("webhooks:read") {
        return refused(&operator, "This page needs the webhooks:read permission.");
    }
    let mut path = "/webhooks?limit=50".to_string();
    if let Some(cursor) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let reply = console
        .call(&operator, "GET", &path, None, None, None)
        .await;
    if !reply.ok() {
        return refused(&operator, reply.message());
    }
    let hooks = reply.body["data"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Webhooks" }
        (alert(query.error.as_deref()))
        p { "Each change to a key, app, policy or operator is posted to these endpoints, signed as "
            a href="https://www.standardwebhooks.com/" { "Standard Webhooks" } " describes." }
        @if hooks.is_empty() { p.empty { "No endpoints yet." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "State" } th scope="col" { "Created" } } }
                tbody { @for hook in &hooks { tr {
                    td { a href=(format!("/console/webhooks/{}", text(&hook["id"]))) { (text(&hook["url"])) } }
                    td { (text(&hook["events"])) }
                    td { @if hook["disabled"] == true { span.badge.revoked { "paused" } } @else { span.badge.active { "enabled" } } }
                    td { (time(hook["created_at"].as_str(), now())) }
                } } }
            } }
        }
        nav.pages aria-label="Pages" {
            @if let Some(next) = reply.body["next_cursor"].as_str() {
                a href=(format!("/console/webhooks?cursor={next}")) { "Next page" }
            }
        }
        @if operator.may("webhooks:write") {
            section aria-labelledby="add-title" {
                h2 #add-title { "Add an endpoint" }
                form method="post" action="/console/webhooks" {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    input type="hidden" name="form_id" value=(crate::auth::base62::random(24));
                    p { label for="hook-url" { "URL" } input #hook-url type="url" name="url" required placeholder="https://hooks.example.com/tollgate"; }
                    p { label for="hook-description" { "Description" } input #hook-description type="text" name="description"; }
                    fieldset { legend { "Events" }
                        p.choice { input #event-all type="checkbox" name="events" value="*" checked; label for="event-all" { "Every event" } }
                        @for kind in crate::events::catalog::TYPES.iter().filter(|k| **k != "webhook.test") {
                            @let id = format!("event-{}", kind.replace('.', "-"));
                            p.choice { input id=(id) type="checkbox" name="events" value=(kind); label for=(id) { (kind) } }
                        }
                    }
                    p { button type="submit" { "Add endpoint" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Webhooks", "/console/webhooks", body),
    )
}

/// The secret of a new endpoint, or a rotated one, shown once.
fn secret_page(operator: &Operator, title: &str, hook: &Value, secret: &str) -> Response {
    let id = text(&hook["id"]);
    let body = html! {
        h1 { (title) }
        div.secret {
            p { "Copy the signing secret now: " strong { "it will not be shown again." } }
            dl {
                dt { "Endpoint" } dd { code { (text(&hook["url"])) } }
                dt { "Signing secret" }
                dd { code #secret { (secret) } " " button.copy type="button" data-copy="secret" { "Copy" } }
            }
            p { a href=(format!("/console/webhooks/{id}")) { "Done" } }
        }
    };
    respond(
        StatusCode::OK,
        page(operator, title, "/console/webhooks", body),
    )
}

async fn create(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let mut events = fields.all("events");
    if events.iter().any(|e| e == "*") {
        events = vec!["*".into()];
    }
    let request = json!({
        "url": fields.get("url").unwrap_or_default(),
        "events": events,
        "description": fields.get("description").unwrap_or_default(),
    });
    let reply = console
        .call(
            &operator,
            "POST",
            "/webhooks",
            Some(request),
            fields.get("csrf_token"),
            fields.get("form_id"),
        )
        .await;
    match reply.status {
        StatusCode::CREATED => match reply.body["secret"].as_str() {
            Some(secret) if !reply.replayed() => {
                secret_page(&operator, "Your new endpoint", &reply.body, secret)
            }
            _ => Redirect::to("/console/webhooks").into_response(),
        },
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => back("/console/webhooks", "error", reply.message()),
    }
}

fn button(operator: &Operator, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf_token" value=(operator.csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

async fn detail(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let hook = console
        .call(
            &operator,
            "GET",
            &format!("/webhooks/{id}"),
            None,
            None,
            None,
        )
        .await;
    if !hook.ok() {
        return match hook.status {
            StatusCode::NOT_FOUND => super::page::not_found(),
            _ => refused(&operator, hook.message()),
        };
    }
    let mut path = format!("/webhooks/{id}/deliveries?limit=50");
    if let Some(cursor) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let deliveries = console
        .call(&operator, "GET", &path, None, None, None)
        .await;
    let rows = deliveries.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let hook = &hook.body;
    let base = format!("/console/webhooks/{id}");
    let write = operator.may("webhooks:write");
    let body = html! {
        h1 { "Endpoint " code { (text(&hook["url"])) } }
        (alert(query.error.as_deref()))
        (notice(query.notice.as_deref()))
        dl.record {
            dt { "ID" } dd { code { (id) } }
            dt { "Events" } dd { (text(&hook["events"])) }
            dt { "Description" } dd { (text(&hook["description"])) }
            dt { "State" } dd { @if hook["disabled"] == true { "paused: deliveries wait until it is enabled" } @else { "enabled" } }
            @if let Some(until) = hook["previous_secret_until"].as_str() {
                dt { "Previous secret" } dd { "also signs until " (time(Some(until), now())) }
            }
        }
        @if write {
            div.actions {
                (button(&operator, &format!("{base}/test"), "Send a test event", ""))
                (button(&operator, &format!("{base}/rotate-secret"), "Rotate the secret", ""))
                @if hook["disabled"] == true { (button(&operator, &format!("{base}/enable"), "Enable", "")) }
                @else { (button(&operator, &format!("{base}/disable"), "Pause", "")) }
                (button(&operator, &format!("{base}/delete"), "Delete", "danger"))
            }
        }
        h2 { "Deliveries" }
        @if rows.is_empty() { p.empty { "Nothing delivered yet." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Event" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Last status" } th scope="col" { "Next attempt" } th scope="col" { "Error" } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody { @for row in &rows { tr {
                    td { (text(&row["type"])) br; code { (text(&row["event_id"])) } }
                    td { span class=(format!("badge {}", text(&row["state"]))) { (text(&row["state"])) } }
                    td { (text(&row["attempts"])) }
                    td { (text(&row["last_status"])) }
                    td { (time(row["next_attempt_at"].as_str(), now())) }
                    td { (text(&row["last_error"])) }
                    td { @if write && row["state"] == "failed" {
                        (button(&operator, &format!("{base}/deliveries/{}/retry", text(&row["id"])), "Retry", ""))
                    } }
                } } }
            } }
        }
        nav.pages aria-label="Pages" {
            @if let Some(next) = deliveries.body["next_cursor"].as_str() {
                a href=(format!("{base}?cursor={next}")) { "Older deliveries" }
            }
        }
        p { a href="/console/webhooks" { "All endpoints" } }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Webhook endpoint", "/console/webhooks", body),
    )
}

/// A request to the admin API about one endpoint.
struct Call<'a> {
    method: &'a str,
    path: String,
    request: Option<Value>,
}

/// An action on endpoint `id`: its answer, or the page to go to (back to the endpoint's
/// page with `done` as a notice, or with the refusal).
async fn act(
    console: &Console,
    headers: &HeaderMap,
    body: &Bytes,
    id: &str,
    call: Call<'_>,
    done: Option<&str>,
) -> Result<(Operator, Reply), Response> {
    let back_to = format!("/console/webhooks/{id}");
    let Some(operator) = Operator::signed_in(console, headers).await else {
        return Err(sign_in_first());
    };
    let fields = Fields::parse(body);
    let reply = console
        .call(
            &operator,
            call.method,
            &call.path,
            call.request,
            fields.get("csrf_token"),
            None,
        )
        .await;
    match (reply.status, done) {
        (status, Some(done)) if status.is_success() => Err(back(&back_to, "notice", done)),
        (status, None) if status.is_success() => Ok((operator, reply)),
        (StatusCode::FORBIDDEN, _) => Err(refused(&operator, reply.message())),
        _ => Err(back(&back_to, "error", reply.message())),
    }
}

/// The answer of an action that ends on a page.
fn ended(result: Result<(Operator, Reply), Response>, to: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(to).into_response(),
        Err(answer) => answer,
    }
}

async fn send_test(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let call = Call {
        method: "POST",
        path: format!("/webhooks/{id}/test"),
        request: Some(json!({})),
    };
    let done = Some("A webhook.test event is on its way.");
    ended(
        act(&console, &headers, &body, &id, call, done).await,
        "/console/webhooks",
    )
}

async fn rotate_secret(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let call = Call {
        method: "POST",
        path: format!("/webhooks/{id}/rotate-secret"),
        request: Some(json!({})),
    };
    match act(&console, &headers, &body, &id, call, None).await {
        Ok((operator, reply)) => match reply.body["secret"].as_str() {
            Some(secret) => secret_page(&operator, "The new signing secret", &reply.body, secret),
            None => Redirect::to(&format!("/console/webhooks/{id}")).into_response(),
        },
        Err(answer) => answer,
    }
}

async fn set_disabled(
    console: &Console,
    headers: &HeaderMap,
    body: &Bytes,
    id: &str,
    disabled: bool,
) -> Response {
    let call = Call {
        method: "PATCH",
        path: format!("/webhooks/{id}"),
        request: Some(json!({"disabled": disabled})),
    };
    let done = if disabled {
        "Paused: deliveries wait until you enable it."
    } else {
        "Enabled: waiting deliveries go out now."
    };
    ended(
        act(console, headers, body, id, call, Some(done)).await,
        "/console/webhooks",
    )
}

async fn disable(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    set_disabled(&console, &headers, &body, &id, true).await
}

async fn enable(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    set_disabled(&console, &headers, &body, &id, false).await
}

async fn delete(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let call = Call {
        method: "DELETE",
        path: format!("/webhooks/{id}"),
        request: None,
    };
    ended(
        act(&console, &headers, &body, &id, call, None).await,
        "/console/webhooks",
    )
}

async fn retry(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, delivery)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let call = Call {
        method: "POST",
        path: format!("/webhooks/{id}/deliveries/{delivery}/retry"),
        request: Some(json!({})),
    };
    let done = Some("The delivery is tried again now.");
    ended(
        act(&console, &headers, &body, &id, call, done).await,
        "/console/webhooks",
    )
}
