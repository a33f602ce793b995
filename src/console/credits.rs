//! The console's credits: a key's or an owner's balance and refill, and the form that sets,
//! increments or decrements it through `POST /keys/{id}/credits` or
//! `POST /owners/{id}/credits`.

use super::{sign_in_first, Console, Fields, Operator};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/console/keys/{id}/credits", post(change_key))
        .route("/console/owners/{id}/credits", post(change_owner))
}

/// `7 of a daily 10`, `7`, or `none`.
pub fn describe(credits: &Value) -> String {
    let Some(remaining) = credits["remaining"].as_u64() else {
        return "none".into();
    };
    match (
        credits["refill"]["interval"].as_str(),
        credits["refill"]["amount"].as_u64(),
    ) {
        (Some("day"), Some(amount)) => format!("{remaining} left, refilled to {amount} each day"),
        (Some("month"), Some(amount)) => {
            format!("{remaining} left, refilled to {amount} each month")
        }
        _ => format!("{remaining} left"),
    }
}

/// The credits section of a key's or an owner's page: the balance, and for an operator who
/// may change it, the form.
pub fn section(operator: &Operator, action: &str, credits: &Value, may: bool) -> Markup {
    html! {
        section aria-labelledby="credits-title" {
            h2 #credits-title { "Credits" }
            p { (describe(credits)) }
            @if may {
                form method="post" action=(action) {
                    input type="hidden" name="csrf_token" value=(operator.csrf);
                    p { label for="credits-op" { "Change" }
                        select #credits-op name="op" {
                            option value="set" { "Set to" }
                            option value="increment" { "Add" }
                            option value="decrement" { "Take away" }
                        }
                    }
                    p { label for="credits-amount" { "Credits" }
                        input #credits-amount type="number" min="0" name="amount" required; }
                    p { button type="submit" { "Apply" } }
                }
            }
        }
    }
}

async fn change(
    console: &Console,
    headers: &HeaderMap,
    kind: &str,
    id: &str,
    body: &Bytes,
) -> Response {
    let Some(operator) = Operator::signed_in(console, headers).await else {
        return sign_in_first();
    };
    let id = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
    let here = format!("/console/{kind}/{id}");
    let fields = Fields::parse(body);
    let back = |name: &str, message: &str| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair(
            name,
            message.strip_prefix("request body: ").unwrap_or(message),
        );
        Redirect::to(&format!("{here}?{}", query.finish())).into_response()
    };
    let Some(amount) = fields
        .get("amount")
        .and_then(|a| a.trim().parse::<u64>().ok())
    else {
        return back("error", "Credits must be a whole number.");
    };
    let reply = console
        .call(
            &operator,
            "POST",
            &format!("/{kind}/{id}/credits"),
            Some(json!({"op": fields.get("op").unwrap_or_default(), "amount": amount})),
            fields.get("csrf_token"),
            None,
        )
        .await;
    match reply.status {
        // The key page says "Saved."; the owner page says what it is told.
        StatusCode::OK if kind == "keys" => {
            Redirect::to(&format!("{here}?saved=1")).into_response()
        }
        StatusCode::OK => back("notice", "Credits changed."),
        StatusCode::FORBIDDEN => super::page::refused(&operator, reply.message()),
        _ => back("error", reply.message()),
    }
}

async fn change_key(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    change(&console, &headers, "keys", &id, &body).await
}

async fn change_owner(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    change(&console, &headers, "owners", &id, &body).await
}
