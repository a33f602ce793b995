//! The console's owner pages: every owner (add one), and each owner with its keys and the
//! form that edits its name, external id and the limits its keys share. Every action is
//! the admin API's.

use super::charts;
use super::page::{alert, back, page, refused, respond, status, time};
use super::{sign_in_first, Console, Fields, Operator};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/owners", get(list).post(create))
        .route("/console/owners/{id}", get(detail))
        .route("/console/owners/{id}/edit", post(edit))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    error: Option<String>,
    notice: Option<String>,
    cursor: Option<String>,
    /// The usage chart's range: 24h, 7d or 30d.
    range: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `100 a minute, 10000 a day`, or `none`.
fn limit_text(limit: &Value) -> String {
    match (limit["per_minute"].as_u64(), limit["per_day"].as_u64()) {
        (Some(minute), Some(day)) => format!("{minute} a minute, {day} a day"),
        _ => "none".into(),
    }
}

/// The shared limit of a form: both fields, or neither (`null`: no shared limit).
fn limit_field(fields: &Fields) -> Result<Value, String> {
    let read = |name: &str| fields.get(name).map(str::trim).filter(|v| !v.is_empty());
    match (read("per_minute"), read("per_day")) {
        (None, None) => Ok(Value::Null),
        (Some(minute), Some(day)) => match (minute.parse::<u64>(), day.parse::<u64>()) {
            (Ok(minute), Ok(day)) => Ok(json!({"per_minute": minute, "per_day": day})),
            _ => Err("Requests per minute and per day must be whole numbers.".into()),
        },
        _ => Err("Give both requests per minute and per day, or neither.".into()),
    }
}

fn limit_inputs(limit: &Value) -> Markup {
    html! {
        fieldset { legend { "Shared rate limit" }
            p { label for="owner-per-minute" { "Requests per minute" }
                input #owner-per-minute type="number" min="1" name="per_minute" value=(text(&limit["per_minute"])); }
            p { label for="owner-per-day" { "Requests per day" }
                input #owner-per-day type="number" min="1" name="per_day" value=(text(&limit["per_day"])); }
            p.hint { "All the owner's keys share these windows, beside each key's own. Leave both empty for none." }
        }
    }
}

async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    if !operator.may("owners:read") {
        return refused(&operator, "This page needs the owners:read permission.");
    }
    let mut path = "/owners?limit=50".to_string();
    if let Some(cursor) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let reply = console
        .call(&operator, "GET", &path, None, None, None)
        .await;
    if !reply.ok() {
        return refused(&operator, reply.message());
    }
    let owners = reply.body["data"].as_array().cloned().unwrap_or_default();
    let now = crate::clock::now_ms();
    let body = html! {
        h1 { "Owners" }
        (alert(query.error.as_deref()))
        p { "The customers you issue keys to. An owner's keys share its rate limit." }
        @if owners.is_empty() { p.empty { "No owners yet." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "External ID" } th scope="col" { "Shared rate limit" } th scope="col" { "Created" } } }
                tbody { @for owner in &owners { tr {
                    td { a href=(format!("/console/owners/{}", text(&owner["id"]))) { (text(&owner["name"])) } }
                    td { (text(&owner["external_id"])) }
                    td { (limit_text(&owner["rate_limit"])) }
                    td { (time(owner["created_at"].as_str(), now)) }
                } } }
            } }
        }
        nav.pages aria-label="Pages" {
            @if let Some(next) = reply.body["next_cursor"].as_str() {
                a href=(format!("/console/owners?cursor={next}")) { "Next page" }
            }
        }
        @if operator.may("owners:write") {
            section aria-labelledby="add-title" {
                h2 #add-title { "Add an owner" }
                form method="post" action="/console/owners" {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    input type="hidden" name="form_id" value=(crate::auth::base62::random(24));
                    p { label for="owner-name" { "Name" } input #owner-name type="text" name="name" required; }
                    p { label for="owner-external-id" { "External ID" } input #owner-external-id type="text" name="external_id"; }
                    (limit_inputs(&Value::Null))
                    p { button type="submit" { "Add owner" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Owners", "/console/owners", body),
    )
}

async fn create(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let limit = match limit_field(&fields) {
        Ok(limit) => limit,
        Err(message) => return back("/console/owners", "error", &message),
    };
    let mut request = Map::new();
    request.insert("name".into(), json!(fields.get("name").unwrap_or_default()));
    if let Some(external) = fields.get("external_id").filter(|v| !v.trim().is_empty()) {
        request.insert("external_id".into(), json!(external));
    }
    if !limit.is_null() {
        request.insert("rate_limit".into(), limit);
    }
    let reply = console
        .call(
            &operator,
            "POST",
            "/owners",
            Some(Value::Object(request)),
            fields.get("csrf_token"),
            fields.get("form_id"),
        )
        .await;
    match reply.status {
        StatusCode::CREATED => {
            Redirect::to(&format!("/console/owners/{}", text(&reply.body["id"]))).into_response()
        }
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => back("/console/owners", "error", reply.message()),
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
    if !operator.may("owners:read") {
        return refused(&operator, "This page needs the owners:read permission.");
    }
    let owner_id = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
    let reply = console
        .call(
            &operator,
            "GET",
            &format!("/owners/{owner_id}"),
            None,
            None,
            None,
        )
        .await;
    if reply.status == StatusCode::NOT_FOUND {
        return super::page::not_found();
    }
    if !reply.ok() {
        return refused(&operator, reply.message());
    }
    let owner = reply.body;
    let keys = console
        .call(
            &operator,
            "GET",
            &format!("/owners/{owner_id}/keys?limit=100"),
            None,
            None,
            None,
        )
        .await;
    let keys = keys.body["data"].as_array().cloned().unwrap_or_default();
    let now = crate::clock::now_ms();
    let hours = charts::range_hours(query.range.as_deref());
    let from = crate::clock::rfc3339(now - hours as i64 * 3_600_000);
    let usage = console
        .call(
            &operator,
            "GET",
            &format!("/analytics?owner_id={owner_id}&group_by=outcome&from={from}"),
            None,
            None,
            None,
        )
        .await
        .body;
    let name = text(&owner["name"]);
    let body = html! {
        h1 { (name) }
        (alert(query.error.as_deref()))
        @if let Some(message) = query.notice.as_deref() { p.notice role="status" { (message) } }
        dl.record {
            dt { "ID" } dd { code { (text(&owner["id"])) } }
            dt { "External ID" } dd { (text(&owner["external_id"])) }
            dt { "Shared rate limit" } dd { (limit_text(&owner["rate_limit"])) }
            dt { "Created" } dd { (time(owner["created_at"].as_str(), now)) }
            dt { "Updated" } dd { (time(owner["updated_at"].as_str(), now)) }
        }
        (super::credits::section(&operator, &format!("/console/owners/{owner_id}/credits"), &owner["credits"], operator.may("owners:write")))
        section aria-labelledby="usage-title" {
            h2 #usage-title { "Usage of all its keys, by hour and outcome" }
            (charts::range_picker(&format!("/console/owners/{owner_id}"), hours))
            (charts::hourly(&charts::from_analytics(&usage), hours, now))
        }
        section aria-labelledby="keys-title" {
            h2 #keys-title { "Keys" }
            @if keys.is_empty() { p.empty { "No keys yet. Give a key this owner when you create or edit it (owner_id)." } }
            @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Start" } th scope="col" { "Status" } th scope="col" { "Last used" } } }
                    tbody { @for key in &keys { tr {
                        td { a href=(format!("/console/keys/{}", text(&key["id"]))) { (text(&key["name"])) } }
                        td { code { (text(&key["start"])) } }
                        td { (status(if key["revoked_at"].is_null() { "active" } else { "revoked" })) }
                        td { (time(key["last_used_at"].as_str(), now)) }
                    } } }
                } }
            }
        }
        @if operator.may("owners:write") {
            section aria-labelledby="edit-title" {
                h2 #edit-title { "Edit" }
                form method="post" action=(format!("/console/owners/{owner_id}/edit")) {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    p { label for="owner-name" { "Name" } input #owner-name type="text" name="name" required value=(name); }
                    p { label for="owner-external-id" { "External ID" } input #owner-external-id type="text" name="external_id" value=(text(&owner["external_id"])); }
                    (limit_inputs(&owner["rate_limit"]))
                    p { button type="submit" { "Save" } }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, &name, "/console/owners", body),
    )
}

async fn edit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let owner_id = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
    let here = format!("/console/owners/{owner_id}");
    let fields = Fields::parse(&body);
    let limit = match limit_field(&fields) {
        Ok(limit) => limit,
        Err(message) => return back(&here, "error", &message),
    };
    let external = fields
        .get("external_id")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or(Value::Null, |v| json!(v));
    let request = json!({
        "name": fields.get("name").unwrap_or_default(),
        "external_id": external,
        "rate_limit": limit,
    });
    let reply = console
        .call(
            &operator,
            "PATCH",
            &format!("/owners/{owner_id}"),
            Some(request),
            fields.get("csrf_token"),
            None,
        )
        .await;
    match reply.status {
        StatusCode::OK => back(&here, "notice", "Saved."),
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => back(&here, "error", reply.message()),
    }
}
