//! The console's page frame and small parts: the layout with its navigation and Sign out,
//! times as people read them, status badges, messages, the redirect back after a form, and the
//! two static files.

use super::Operator;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};

const STYLESHEET: &[u8] = include_bytes!("static/console.css");
const SCRIPT: &[u8] = include_bytes!("static/console.js");

fn asset(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The pages of the navigation, with the permission each needs.
const NAVIGATION: &[(&str, &str, &str)] = &[
    ("/console/keys", "API keys", "keys:read"),
    ("/console/apps", "Apps", "clients:read"),
    ("/console/users", "Users", "users:read"),
    ("/console/operators", "Operators", "operators:read"),
    ("/console/tokens", "Tokens", "tokens:read"),
    ("/console/owners", "Owners", "owners:read"),
    ("/console/webhooks", "Webhooks", "webhooks:read"),
    ("/console/audit", "Audit log", "audit:read"),
    ("/console/settings", "Settings", "policy:read"),
];

/// A whole page for a signed-in operator.
pub fn page(operator: &Operator, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tollgate" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/keys" { "tollgate" }
                    nav aria-label="Console" {
                        ul {
                            @for (href, label, permission) in NAVIGATION {
                                @if operator.may(permission) {
                                    li {
                                        @if *href == current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/console/logout" {
                        input type="hidden" name="csrf_token" value=(operator.csrf);
                        span.who { (operator.name) " · " (operator.role) }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A page outside the session (sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tollgate" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body.bare { main #main { (body) } }
        }
    }
}

/// A redirect back to `path` after a form, carrying `message` in the query as `name`
/// (`error` or `notice`), without the JSON reader's "request body: " prefix.
pub fn back(path: &str, name: &str, message: &str) -> Response {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair(
        name,
        message.strip_prefix("request body: ").unwrap_or(message),
    );
    Redirect::to(&format!("{path}?{}", query.finish())).into_response()
}

pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

pub fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        bare(
            "Not found",
            html! { h1 { "Not found" } p { a href="/console/keys" { "Back to the console" } } },
        ),
    )
}

/// The page for an action the operator may not take (the API refused it).
pub fn refused(operator: &Operator, message: &str) -> Response {
    respond(
        StatusCode::FORBIDDEN,
        page(
            operator,
            "Not allowed",
            "",
            html! {
                h1 { "Not allowed" }
                p.error role="alert" { (message) }
                p { a href="/console/keys" { "Back to the console" } }
            },
        ),
    )
}

/// An error or a notice above a form.
pub fn alert(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.error role="alert" { (message) }
        }
    }
}

/// The message beside a field, tied to it by `aria-describedby` (`{id}-error`).
pub fn field_error(id: &str, message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.field-error id=(format!("{id}-error")) { (message) }
        }
    }
}

/// An RFC 3339 time as people read it ("in 12 days", "3 hours ago"), the exact time on
/// hover; "never" when absent.
pub fn time(value: Option<&str>, now: i64) -> Markup {
    let Some(text) = value else {
        return html! { span.muted { "never" } };
    };
    let Some(at) = crate::clock::parse_rfc3339(text) else {
        return html! { (text) };
    };
    html! { time datetime=(text) title=(text) { (relative(at, now)) } }
}

/// `at` relative to `now`, in the largest unit that fits.
pub fn relative(at: i64, now: i64) -> String {
    let seconds = (at - now) / 1000;
    let span = seconds.unsigned_abs();
    let (count, unit) = match span {
        0..=44 => return "just now".into(),
        45..=3_599 => (span.div_ceil(60).max(1), "minute"),
        3_600..=86_399 => (span / 3_600, "hour"),
        86_400..=2_591_999 => (span / 86_400, "day"),
        2_592_000..=31_535_999 => (span / 2_592_000, "month"),
        _ => (span / 31_536_000, "year"),
    };
    let unit = if count == 1 {
        unit.to_string()
    } else {
        format!("{unit}s")
    };
    if seconds > 0 {
        format!("in {count} {unit}")
    } else {
        format!("{count} {unit} ago")
    }
}

/// Sorts a page of records by the field a column shows; `-field` sorts descending.
/// `columns` maps column names (as in `?sort=`) to record fields.
pub fn sort_rows(rows: &mut [serde_json::Value], sort: Option<&str>, columns: &[(&str, &str)]) {
    let Some(sort) = sort else { return };
    let (descending, column) = match sort.strip_prefix('-') {
        Some(column) => (true, column),
        None => (false, sort),
    };
    let Some((_, field)) = columns.iter().find(|(name, _)| *name == column) else {
        return;
    };
    let key = |row: &serde_json::Value| match &row[*field] {
        serde_json::Value::String(text) => text.to_lowercase(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    rows.sort_by(|a, b| {
        let order = key(a).cmp(&key(b));
        if descending {
            order.reverse()
        } else {
            order
        }
    });
}

/// A column header that sorts its list (again: the other way), with a marker.
pub fn sort_header(base: &str, sort: Option<&str>, column: &str, label: &str) -> Markup {
    let current = sort.unwrap_or_default();
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
    let separator = if base.contains('?') { '&' } else { '?' };
    html! { a href=(format!("{base}{separator}sort={next}")) { (label) (marker) } }
}

/// A key's status as a badge.
pub fn status(status: &str) -> Markup {
    html! { span class=(format!("badge {status}")) { (status) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = 1_000_000_000_000;
        let minute = 60_000;
        assert_eq!(relative(now + 10_000, now), "just now");
        assert_eq!(relative(now - 3 * 60 * minute, now), "3 hours ago");
        assert_eq!(relative(now + 12 * 1_440 * minute, now), "in 12 days");
        assert_eq!(relative(now + 60 * minute, now), "in 1 hour");
        assert_eq!(relative(now - 90 * 1_440 * minute, now), "3 months ago");
    }
}
