//! The console's API keys: the list with its sparklines, the new-key form, the secret
//! shown once, a key's page with its usage chart, audit entries, edit, rotation and
//! revocation. Each action is the admin API's own request.

use super::charts;
use super::page::{alert, back, field_error, page, refused, respond, status, time};
use super::{sign_in_first, Console, Fields, Operator, Reply};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/keys", get(list).post(create))
        .route("/console/keys/new", get(new_form))
        .route("/console/keys/{id}", get(show))
        .route("/console/keys/{id}/edit", axum::routing::post(edit))
        .route("/console/keys/{id}/rotate", axum::routing::post(rotate))
        .route(
            "/console/keys/{id}/revoke",
            get(confirm_revoke).post(revoke),
        )
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

/// The key's status in one word.
fn key_status(key: &Value) -> &'static str {
    let at = |field: &str| key[field].as_str().and_then(crate::clock::parse_rfc3339);
    crate::store::records::KeyStatus::of(at("revoked_at"), at("expires_at"), now()).as_str()
}

/// A date field (`YYYY-MM-DD`) as the RFC 3339 start of that UTC day.
fn date_to_expiry(date: &str) -> Result<String, String> {
    let at = format!("{date}T00:00:00Z");
    match crate::clock::parse_rfc3339(&at) {
        Some(_) => Ok(at),
        None => Err(format!("\"{date}\" is not a date like 2027-02-01")),
    }
}

/// The latest expiry date the policy allows, as a date, when it sets a maximum lifetime.
fn latest_date(policy: &Value) -> Option<String> {
    let lifetime = crate::config::parse_duration(policy["max_key_lifetime"].as_str()?).ok()?;
    let latest = now() + lifetime.as_millis() as i64;
    Some(crate::clock::date_of_day(crate::clock::day_of(latest)))
}

fn tomorrow() -> String {
    crate::clock::date_of_day(crate::clock::day_of(now()) + 1)
}

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    name: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    cursor: Option<String>,
    sort: Option<String>,
}

/// The list's query string with one parameter changed.
fn list_link(query: &ListQuery, change: (&str, Option<&str>)) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("name", query.name.as_deref()),
        ("status", query.status.as_deref()),
        ("type", query.key_type.as_deref()),
        ("sort", query.sort.as_deref()),
        ("cursor", query.cursor.as_deref()),
    ] {
        let value = if name == change.0 { change.1 } else { value };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            params.push((name, value.to_string()));
        }
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        out.append_pair(name, &value);
    }
    format!("/console/keys?{}", out.finish())
}

/// Sorts a page of keys by a column; `-name` sorts descending.
fn sort_keys(keys: &mut [(Value, Vec<i64>)], sort: &str) {
    let (descending, column) = match sort.strip_prefix('-') {
        Some(column) => (true, column),
        None => (false, sort),
    };
    let field = match column {
        "name" => "name",
        "expires" => "expires_at",
        "last_used" => "last_used_at",
        "created" => "created_at",
        _ => return,
    };
    keys.sort_by(|a, b| {
        let (x, y) = (
            text(&a.0[field]).to_lowercase(),
            text(&b.0[field]).to_lowercase(),
        );
        if descending {
            y.cmp(&x)
        } else {
            x.cmp(&y)
        }
    });
}

async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    if !operator.may("keys:read") {
        return refused(&operator, "Seeing API keys needs the keys:read permission.");
    }
    let api_query = {
        let mut api_query = url::form_urlencoded::Serializer::new(String::new());
        api_query.append_pair("limit", "25");
        for (name, value) in [
            ("name", &query.name),
            ("status", &query.status),
            ("type", &query.key_type),
            ("cursor", &query.cursor),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                api_query.append_pair(name, value);
            }
        }
        api_query.finish()
    };
    let reply = console
        .call(
            &operator,
            "GET",
            &format!("/keys?{api_query}"),
            None,
            None,
            None,
        )
        .await;
    if !reply.ok() {
        return refused(&operator, reply.message());
    }
    let keys: Vec<Value> = reply.body["data"].as_array().cloned().unwrap_or_default();
    // Each key's last 14 days, fetched side by side.
    let mut usage = tokio::task::JoinSet::new();
    for (index, key) in keys.iter().enumerate() {
        let id = text(&key["id"]);
        let console = console.clone();
        let session = operator.clone_session();
        usage.spawn(async move {
            let reply = console
                .call(
                    &session,
                    "GET",
                    &format!("/keys/{id}/usage?days=14&hours=1"),
                    None,
                    None,
                    None,
                )
                .await;
            (index, reply.body)
        });
    }
    let today = crate::clock::day_of(now());
    let mut totals = vec![vec![0; 14]; keys.len()];
    while let Some(Ok((index, body))) = usage.join_next().await {
        totals[index] = charts::daily_totals(&body, 14, today);
    }
    let mut rows: Vec<(Value, Vec<i64>)> = keys.into_iter().zip(totals).collect();
    if let Some(sort) = &query.sort {
        sort_keys(&mut rows, sort);
    }
    let filtered = query.name.is_some() || query.status.is_some() || query.key_type.is_some();
    let sortable = |label: &str, column: &str| {
        let current = query.sort.as_deref().unwrap_or_default();
        let next = if current == column {
            format!("-{column}")
        } else {
            column.to_string()
        };
        let marker = if current == column {
            " ▲"
        } else if current == format!("-{column}") {
            " ▼"
        } else {
            ""
        };
        html! { a href=(list_link(&query, ("sort", Some(&next)))) { (label) (marker) } }
    };
    let body = html! {
        div.heading {
            h1 { "API keys" }
            @if operator.may("keys:write") {
                a.button href="/console/keys/new" { "New API key" }
            }
        }
        form.filters method="get" action="/console/keys" role="search" {
            p {
                label for="search-name" { "Search by name" }
                input #search-name type="search" name="name" value=[query.name.as_deref()];
            }
            p {
                label for="filter-status" { "Status" }
                select #filter-status name="status" {
                    option value="" { "Any status" }
                    @for value in ["active", "expiring", "expired", "revoked"] {
                        option value=(value) selected[query.status.as_deref() == Some(value)] { (value) }
                    }
                }
            }
            p {
                label for="filter-type" { "Type" }
                select #filter-type name="type" {
                    option value="" { "Any type" }
                    option value="fine_grained" selected[query.key_type.as_deref() == Some("fine_grained")] { "Fine-grained" }
                    option value="legacy" selected[query.key_type.as_deref() == Some("legacy")] { "Legacy" }
                }
            }
            p { button type="submit" { "Filter" } }
        }
        @if rows.is_empty() {
            @if filtered {
                p.empty { "No keys match. " a href="/console/keys" { "Show every key" } }
            } @else if operator.may("keys:write") {
                p.empty { "No keys yet: " a href="/console/keys/new" { "New API key" } }
            } @else {
                p.empty { "No keys yet." }
            }
        } @else {
            div.table-wrap {
                table {
                    thead {
                        tr {
                            th scope="col" { (sortable("Name", "name")) }
                            th scope="col" { "Type" }
                            th scope="col" { "Start" }
                            th scope="col" { "Permissions or role" }
                            th scope="col" { (sortable("Expiry", "expires")) }
                            th scope="col" { "Status" }
                            th scope="col" { (sortable("Last used", "last_used")) }
                            th scope="col" { "Last 14 days" }
                        }
                    }
                    tbody {
                        @for (key, daily) in &rows {
                            tr {
                                td { a href=(format!("/console/keys/{}", text(&key["id"]))) { (text(&key["name"])) } }
                                td { (if key["type"] == "legacy" { "Legacy" } else { "Fine-grained" }) }
                                td { code { (text(&key["start"])) "…" } }
                                td {
                                    @if key["type"] == "legacy" { "role: " (text(&key["role"])) }
                                    @else { (text(&key["permissions"])) }
                                }
                                td { (time(key["expires_at"].as_str(), now())) }
                                td { (status(key_status(key))) }
                                td { (time(key["last_used_at"].as_str(), now())) }
                                td { (charts::sparkline(daily)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if query.cursor.is_some() {
                a href=(list_link(&query, ("cursor", None))) { "First page" }
            }
            @if let Some(next) = reply.body["next_cursor"].as_str() {
                a href=(list_link(&query, ("cursor", Some(next)))) { "Next page" }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "API keys", "/console/keys", body),
    )
}

impl Operator {
    /// The same signed-in operator, for a request made alongside.
    fn clone_session(&self) -> Operator {
        Operator {
            session: self.session.clone(),
            csrf: self.csrf.clone(),
            name: self.name.clone(),
            role: self.role.clone(),
            permissions: self.permissions.clone(),
        }
    }
}

/// What the new-key form shows: the values typed so far, and the errors by field.
#[derive(Default)]
struct KeyForm {
    name: String,
    legacy: bool,
    preset: String,
    permissions: Vec<String>,
    role: String,
    expires_on: String,
    ip_allowlist: String,
    allow_infrastructure_ips: bool,
    errors: BTreeMap<&'static str, String>,
    general: Option<String>,
}

/// Which field an API refusal is about, so its message can sit beside it.
fn field_of(reply: &Reply) -> &'static str {
    let message = reply.message();
    match reply.code() {
        "unknown_permission" | "permission_required" => "permissions",
        "invalid_cidr" => "ip_allowlist",
        "expiry_required" | "expiry_beyond_max_lifetime" => "expires_on",
        "legacy_keys_blocked" => "key_type",
        _ if message.contains("expires_at") => "expires_on",
        _ if message.contains("preset") => "preset",
        _ if message.contains("role") => "role",
        _ if message.contains("name") => "name",
        _ if message.contains("ip_allowlist") => "ip_allowlist",
        _ => "",
    }
}

/// A readable message for a refusal.
fn readable(reply: &Reply) -> String {
    match reply.code() {
        "permission_required" => "Choose at least one permission, or a preset.".into(),
        "legacy_keys_blocked" => {
            "The organization blocks new legacy keys: choose Fine-grained.".into()
        }
        "expiry_required" => "The organization requires an expiry date.".into(),
        "expiry_beyond_max_lifetime" => format!("{} Choose an earlier date.", reply.message()),
        _ => {
            let message = reply.message();
            let message = message.strip_prefix("request body: ").unwrap_or(message);
            let mut chars = message.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

fn new_key_page(
    console: &Console,
    operator: &Operator,
    policy: &Value,
    form: &KeyForm,
    status_code: StatusCode,
) -> Response {
    let blocked = policy["block_legacy_keys"].as_bool().unwrap_or(false);
    let latest = latest_date(policy);
    let error = |field: &str| form.errors.get(field).map(String::as_str);
    let described = |field: &str| {
        form.errors
            .contains_key(field)
            .then(|| format!("{field}-error"))
    };
    let form_id = crate::auth::base62::random(24);
    let body = html! {
        h1 { "New API key" }
        (alert(form.general.as_deref()))
        form.key-form method="post" action="/console/keys" {
            input type="hidden" name="csrf_token" value=(operator.csrf);
            input type="hidden" name="form_id" value=(form_id);
            p {
                label for="name" { "Name" }
                input #name type="text" name="name" required maxlength="200" value=(form.name)
                    placeholder="salesforce-production" aria-describedby=[described("name")];
                (field_error("name", error("name")))
            }
            fieldset aria-describedby=[described("key_type")] {
                legend { "Key type" }
                p.choice {
                    input #type-fine type="radio" name="key_type" value="fine_grained" checked[!form.legacy];
                    label for="type-fine" { "Fine-grained" }
                }
                @if !blocked {
                    p.choice {
                        input #type-legacy type="radio" name="key_type" value="legacy" checked[form.legacy];
                        label for="type-legacy" { "Legacy" }
                    }
                }
                (field_error("key_type", error("key_type")))
            }
            p {
                label for="preset" { "Preset" }
                select #preset name="preset" data-presets="1" {
                    option value="" { "None" }
                    @for (preset, permissions) in &console.presets {
                        option value=(preset) data-permissions=(permissions.join(" ")) selected[form.preset == *preset] { (preset) }
                    }
                }
                (field_error("preset", error("preset")))
            }
            fieldset #permissions aria-describedby=[described("permissions")] {
                legend { "Permissions" }
                @for permission in &console.permissions {
                    @let id = format!("permission-{}", permission.replace(':', "-"));
                    p.choice {
                        input id=(id) type="checkbox" name="permissions" value=(permission) checked[form.permissions.contains(permission)];
                        label for=(id) { (permission) }
                    }
                }
                (field_error("permissions", error("permissions")))
            }
            @if !blocked && !console.key_roles.is_empty() {
                p {
                    label for="role" { "Role" }
                    select #role name="role" aria-describedby=[described("role")] {
                        option value="" { "(for legacy keys)" }
                        @for role in &console.key_roles {
                            option value=(role) selected[form.role == *role] { (role) }
                        }
                    }
                    (field_error("role", error("role")))
                }
            }
            p {
                label for="expires_on" {
                    "Expiry date"
                    @if let Some(latest) = &latest { " (required; latest " (latest) ")" }
                }
                input #expires_on type="date" name="expires_on" value=(form.expires_on) min=(tomorrow())
                    max=[latest.as_deref()] required[latest.is_some()] aria-describedby=[described("expires_on")];
                (field_error("expires_on", error("expires_on")))
            }
            p {
                label for="ip_allowlist" { "IP allowlist" }
                textarea #ip_allowlist name="ip_allowlist" rows="3" placeholder="203.0.113.42\n198.51.100.0/24"
                    aria-describedby=(described("ip_allowlist").unwrap_or_else(|| "ip_allowlist-help".into())) { (form.ip_allowlist) }
                small #ip_allowlist-help { "One address or CIDR per line. Empty: any address." }
                (field_error("ip_allowlist", error("ip_allowlist")))
            }
            p.choice {
                input #allow_infrastructure_ips type="checkbox" name="allow_infrastructure_ips" value="true" checked[form.allow_infrastructure_ips];
                label for="allow_infrastructure_ips" { "Allow infrastructure IPs" }
            }
            p { button type="submit" { "Add" } a.cancel href="/console/keys" { "Cancel" } }
        }
    };
    respond(
        status_code,
        page(operator, "New API key", "/console/keys", body),
    )
}

async fn policy_of(console: &Console, operator: &Operator) -> Value {
    let reply = console
        .call(operator, "GET", "/policy", None, None, None)
        .await;
    if reply.ok() {
        reply.body
    } else {
        json!({"block_legacy_keys": false, "max_key_lifetime": null})
    }
}

async fn new_form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    if !operator.may("keys:write") {
        return refused(
            &operator,
            "Creating API keys needs the keys:write permission.",
        );
    }
    let policy = policy_of(&console, &operator).await;
    new_key_page(
        &console,
        &operator,
        &policy,
        &KeyForm::default(),
        StatusCode::OK,
    )
}

/// The secret, shown once: the answer to the POST that made it, never a page to load again.
fn secret_page(
    operator: &Operator,
    title: &str,
    record: &Value,
    secret: &str,
    back: &str,
) -> Response {
    let body = html! {
        h1 { (title) }
        div.secret {
            p { "Your Client ID and secret are below. Copy the secret now: " strong { "it will not be shown again." } }
            dl {
                dt { "Client ID" }
                dd { code #client-id { (text(&record["client_id"])) } }
                dt { "Secret" }
                dd {
                    code #secret { (secret) }
                    " "
                    button.copy type="button" data-copy="secret" { "Copy" }
                }
            }
            p { a href=(back) { "Done: back to the key" } }
        }
    };
    respond(
        StatusCode::CREATED,
        page(operator, title, "/console/keys", body),
    )
}

/// A form sent again (a reload of the page that answered it): nothing new, no secret.
fn replayed_page(operator: &Operator, what: &str, back: &str) -> Response {
    respond(
        StatusCode::OK,
        page(
            operator,
            "Already done",
            "/console/keys",
            html! {
                h1 { "Already done" }
                p { (what) " The secret was shown once, on the first answer, and is not shown again. If it was lost, rotate the key." }
                p { a href=(back) { "Go to the key" } }
            },
        ),
    )
}

async fn create(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let legacy = fields.get("key_type") == Some("legacy");
    let mut form = KeyForm {
        name: fields.get("name").unwrap_or_default().to_string(),
        legacy,
        preset: fields.get("preset").unwrap_or_default().to_string(),
        permissions: fields.all("permissions"),
        role: fields.get("role").unwrap_or_default().to_string(),
        expires_on: fields.get("expires_on").unwrap_or_default().to_string(),
        ip_allowlist: fields.get("ip_allowlist").unwrap_or_default().to_string(),
        allow_infrastructure_ips: fields.checked("allow_infrastructure_ips"),
        ..KeyForm::default()
    };
    let mut request = Map::new();
    request.insert("name".into(), json!(form.name));
    if legacy {
        request.insert("type".into(), json!("legacy"));
        if !form.role.is_empty() {
            request.insert("role".into(), json!(form.role));
        }
    } else {
        // With script, choosing a preset ticked its permissions and the preset is not
        // sent; without, its permissions join the ticked ones (the API merges them).
        if !form.preset.is_empty() {
            request.insert("preset".into(), json!(form.preset));
        }
        if !form.permissions.is_empty() {
            request.insert("permissions".into(), json!(form.permissions));
        }
    }
    let allowlist = fields.lines("ip_allowlist");
    if !allowlist.is_empty() {
        request.insert("ip_allowlist".into(), json!(allowlist));
    }
    if form.allow_infrastructure_ips {
        request.insert("allow_infrastructure_ips".into(), json!(true));
    }
    if !form.expires_on.is_empty() {
        match date_to_expiry(&form.expires_on) {
            Ok(at) => {
                request.insert("expires_at".into(), json!(at));
            }
            Err(message) => {
                form.errors.insert("expires_on", message);
            }
        }
    }
    if form.errors.is_empty() {
        let reply = console
            .call(
                &operator,
                "POST",
                "/keys",
                Some(Value::Object(request)),
                fields.get("csrf_token"),
                fields.get("form_id"),
            )
            .await;
        if reply.status == StatusCode::CREATED {
            let id = text(&reply.body["id"]);
            let back = format!("/console/keys/{id}");
            return match reply.body["key"].as_str() {
                Some(secret) if !reply.replayed() => {
                    secret_page(&operator, "Your new API key", &reply.body, secret, &back)
                }
                _ => replayed_page(&operator, "This key was created already.", &back),
            };
        }
        if reply.status == StatusCode::FORBIDDEN
            && matches!(reply.code(), "forbidden" | "csrf_failed")
        {
            return refused(&operator, reply.message());
        }
        let field = field_of(&reply);
        if field.is_empty() {
            form.general = Some(readable(&reply));
        } else {
            form.errors.insert(field, readable(&reply));
        }
    }
    let policy = policy_of(&console, &operator).await;
    new_key_page(&console, &operator, &policy, &form, StatusCode::BAD_REQUEST)
}

#[derive(Debug, serde::Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
    error: Option<String>,
    /// The usage chart's range: 24h, 7d or 30d.
    range: Option<String>,
}

async fn show(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let reply = console
        .call(&operator, "GET", &format!("/keys/{id}"), None, None, None)
        .await;
    if reply.status == StatusCode::NOT_FOUND {
        return super::page::not_found();
    }
    if !reply.ok() {
        return refused(&operator, reply.message());
    }
    let key = reply.body;
    let hours = charts::range_hours(query.range.as_deref());
    let from = crate::clock::rfc3339(now() - hours as i64 * 3_600_000);
    let usage = console
        .call(
            &operator,
            "GET",
            &format!(
                "/analytics?key_id={}&group_by=outcome&from={from}",
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            ),
            None,
            None,
            None,
        )
        .await
        .body;
    let usage = (charts::from_analytics(&usage), hours);
    let audit = if operator.may("audit:read") {
        let reply = console
            .call(
                &operator,
                "GET",
                &format!("/audit?target={id}&limit=20"),
                None,
                None,
                None,
            )
            .await;
        Some(reply.body["data"].as_array().cloned().unwrap_or_default())
    } else {
        None
    };
    let policy = policy_of(&console, &operator).await;
    key_page(
        &console,
        &operator,
        &key,
        &usage,
        audit,
        &policy,
        query.saved.is_some(),
        query.error.as_deref(),
    )
}

#[allow(clippy::too_many_arguments)]
fn key_page(
    console: &Console,
    operator: &Operator,
    key: &Value,
    usage: &(Value, usize),
    audit: Option<Vec<Value>>,
    policy: &Value,
    saved: bool,
    error: Option<&str>,
) -> Response {
    let id = text(&key["id"]);
    let revoked = !key["revoked_at"].is_null();
    let legacy = key["type"] == "legacy";
    let held: Vec<String> = serde_json::from_value(key["permissions"].clone()).unwrap_or_default();
    let allowlist: Vec<String> =
        serde_json::from_value(key["ip_allowlist"].clone()).unwrap_or_default();
    let latest = latest_date(policy);
    let allowed_from = match (
        allowlist.is_empty(),
        key["allow_infrastructure_ips"].as_bool().unwrap_or(false),
    ) {
        (true, false) => "any address",
        (true, true) => "the infrastructure IPs only",
        (false, false) => "the IP allowlist",
        (false, true) => "the IP allowlist and the infrastructure IPs",
    };
    let body = html! {
        div.heading {
            h1 { (text(&key["name"])) " " (status(key_status(key))) }
        }
        @if saved { p.notice role="status" { "Saved." } }
        (alert(error))
        dl.record {
            dt { "Client ID" } dd { code { (text(&key["client_id"])) } }
            dt { "Key id" } dd { code { (id) } }
            dt { "Type" } dd { (if legacy { "Legacy" } else { "Fine-grained" }) }
            dt { "Start" } dd { code { (text(&key["start"])) "…" } }
            @if legacy { dt { "Role" } dd { (text(&key["role"])) } }
            @else { dt { "Permissions" } dd { (text(&key["permissions"])) } }
            dt { "Works from" } dd { (allowed_from) @if !allowlist.is_empty() { ": " (allowlist.join(", ")) } }
            @if let Some(fingerprint) = key["client_cert_sha256"].as_str() {
                dt { "Client certificate" } dd { "only with the certificate whose SHA-256 is " code { (fingerprint) } }
            }
            @if let Some(owner) = key["owner_id"].as_str() {
                dt { "Owner" } dd { a href=(format!("/console/owners/{owner}")) { code { (owner) } } }
            }
            dt { "Environment" } dd { (text(&key["environment"])) }
            dt { "Expires" } dd { (time(key["expires_at"].as_str(), now())) }
            dt { "Created" } dd { (time(key["created_at"].as_str(), now())) }
            dt { "Rotated" } dd { (time(key["rotated_at"].as_str(), now())) }
            dt { "Last used" } dd { (time(key["last_used_at"].as_str(), now())) }
            @if revoked { dt { "Revoked" } dd { (time(key["revoked_at"].as_str(), now())) } }
        }
        section aria-labelledby="usage-title" {
            @let (chart, hours) = usage;
            h2 #usage-title { "Usage by hour and outcome" }
            (charts::range_picker(&format!("/console/keys/{id}"), *hours))
            (charts::hourly(chart, *hours, now()))
        }
        (super::credits::section(operator, &format!("/console/keys/{id}/credits"), &key["credits"], !revoked && operator.may("keys:write")))
        @if !revoked && (operator.may("keys:write") || operator.may("keys:rotate") || operator.may("keys:revoke")) {
            div.actions {
                @if operator.may("keys:write") {
                    section aria-labelledby="edit-title" {
                        h2 #edit-title { "Edit" }
                        form method="post" action=(format!("/console/keys/{id}/edit")) {
                            input type="hidden" name="csrf_token" value=(operator.csrf);
                            p {
                                label for="edit-name" { "Name" }
                                input #edit-name type="text" name="name" required maxlength="200" value=(text(&key["name"]));
                            }
                            @if !legacy {
                                fieldset {
                                    legend { "Permissions" }
                                    @for permission in &console.permissions {
                                        @let field = format!("edit-permission-{}", permission.replace(':', "-"));
                                        p.choice {
                                            input id=(field) type="checkbox" name="permissions" value=(permission) checked[held.contains(permission)];
                                            label for=(field) { (permission) }
                                        }
                                    }
                                }
                            }
                            p {
                                label for="edit-allowlist" { "IP allowlist" }
                                textarea #edit-allowlist name="ip_allowlist" rows="3" { (allowlist.join("\n")) }
                            }
                            p.choice {
                                input #edit-infrastructure type="checkbox" name="allow_infrastructure_ips" value="true"
                                    checked[key["allow_infrastructure_ips"].as_bool().unwrap_or(false)];
                                label for="edit-infrastructure" { "Allow infrastructure IPs" }
                            }
                            p { button type="submit" { "Save changes" } }
                        }
                    }
                }
                @if operator.may("keys:rotate") {
                    section aria-labelledby="rotate-title" {
                        h2 #rotate-title { "Rotate" }
                        p { "A new secret, shown once. The old one stops at once, or when the grace period ends." }
                        form method="post" action=(format!("/console/keys/{id}/rotate")) {
                            input type="hidden" name="csrf_token" value=(operator.csrf);
                            input type="hidden" name="form_id" value=(crate::auth::base62::random(24));
                            p {
                                label for="new_expires_on" {
                                    "New expiry date"
                                    @if let Some(latest) = &latest { " (required; latest " (latest) ")" }
                                }
                                input #new_expires_on type="date" name="expires_on" min=(tomorrow()) max=[latest.as_deref()] required[latest.is_some()];
                            }
                            p {
                                label for="grace" { "Grace period" }
                                input #grace type="text" name="grace" placeholder="1h" aria-describedby="grace-help";
                                small #grace-help { "How long the old secret keeps working, e.g. 1h (at most 7d). Empty: it stops now." }
                            }
                            p { button type="submit" { "Confirm rotation" } }
                        }
                    }
                }
                @if operator.may("keys:revoke") {
                    section aria-labelledby="revoke-title" {
                        h2 #revoke-title { "Revoke" }
                        p { "Revocation is final: the key and its tokens stop working, and it cannot be restored." }
                        p { a.button.danger href=(format!("/console/keys/{id}/revoke")) { "Revoke" } }
                    }
                }
            }
        }
        @if let Some(entries) = audit {
            section aria-labelledby="audit-title" {
                h2 #audit-title { "Audit log" }
                @if entries.is_empty() { p.empty { "No entries." } }
                @else {
                    div.table-wrap {
                        table {
                            thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } } }
                            tbody {
                                @for entry in &entries {
                                    tr {
                                        td { (time(entry["at"].as_str(), now())) }
                                        td { (text(&entry["actor"]["name"])) " (" (text(&entry["actor"]["kind"])) ")" }
                                        td { code { (text(&entry["action"])) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/console/keys" { "All keys" } }
    };
    respond(
        StatusCode::OK,
        page(operator, &text(&key["name"]), "/console/keys", body),
    )
}

fn back_with_error(id: &str, message: &str) -> Response {
    back(&format!("/console/keys/{id}"), "error", message)
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
    let fields = Fields::parse(&body);
    let mut change = Map::new();
    change.insert("name".into(), json!(fields.get("name").unwrap_or_default()));
    let current = console
        .call(&operator, "GET", &format!("/keys/{id}"), None, None, None)
        .await;
    if current.body["type"] != "legacy" {
        change.insert("permissions".into(), json!(fields.all("permissions")));
    }
    change.insert("ip_allowlist".into(), json!(fields.lines("ip_allowlist")));
    change.insert(
        "allow_infrastructure_ips".into(),
        json!(fields.checked("allow_infrastructure_ips")),
    );
    let reply = console
        .call(
            &operator,
            "PATCH",
            &format!("/keys/{id}"),
            Some(Value::Object(change)),
            fields.get("csrf_token"),
            None,
        )
        .await;
    match reply.status {
        StatusCode::OK => Redirect::to(&format!("/console/keys/{id}?saved=1")).into_response(),
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => back_with_error(&id, &readable(&reply)),
    }
}

async fn rotate(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let mut request = Map::new();
    if let Some(date) = fields.get("expires_on") {
        match date_to_expiry(date) {
            Ok(at) => {
                request.insert("expires_at".into(), json!(at));
            }
            Err(message) => return back_with_error(&id, &message),
        }
    }
    if let Some(grace) = fields.get("grace") {
        request.insert("grace".into(), json!(grace));
    }
    let reply = console
        .call(
            &operator,
            "POST",
            &format!("/keys/{id}/rotate"),
            Some(Value::Object(request)),
            fields.get("csrf_token"),
            fields.get("form_id"),
        )
        .await;
    let back = format!("/console/keys/{id}");
    match reply.status {
        StatusCode::OK => match reply.body["key"].as_str() {
            Some(secret) if !reply.replayed() => secret_page(
                &operator,
                "The key's new secret",
                &reply.body,
                secret,
                &back,
            ),
            _ => replayed_page(&operator, "This rotation was done already.", &back),
        },
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => back_with_error(&id, &readable(&reply)),
    }
}

async fn confirm_revoke(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let reply = console
        .call(&operator, "GET", &format!("/keys/{id}"), None, None, None)
        .await;
    if !reply.ok() {
        return super::page::not_found();
    }
    let name = text(&reply.body["name"]);
    let body = html! {
        h1 { "Revoke " (name) "?" }
        div.confirm {
            p { strong { "This cannot be undone." } " The key's secret, and every token issued with it, stop working at once, everywhere. A revoked key cannot be restored." }
            form method="post" action=(format!("/console/keys/{id}/revoke")) {
                input type="hidden" name="csrf_token" value=(operator.csrf);
                button.danger type="submit" { "Confirm revocation" }
                " "
                a.cancel href=(format!("/console/keys/{id}")) { "Cancel" }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&operator, "Revoke a key", "/console/keys", body),
    )
}

async fn revoke(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(operator) = Operator::signed_in(&console, &headers).await else {
        return sign_in_first();
    };
    let fields = Fields::parse(&body);
    let reply = console
        .call(
            &operator,
            "POST",
            &format!("/keys/{id}/revoke"),
            Some(json!({})),
            fields.get("csrf_token"),
            None,
        )
        .await;
    match reply.status {
        StatusCode::OK => Redirect::to(&format!("/console/keys/{id}")).into_response(),
        StatusCode::FORBIDDEN => refused(&operator, reply.message()),
        _ => back_with_error(&id, &readable(&reply)),
    }
}
