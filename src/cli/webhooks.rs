//! `tollgate webhooks …` and `tollgate events`: webhook endpoints, their deliveries and
//! secrets, and the event stream, through the admin API.

use super::admin_client::{self, print, with_query, AdminArgs, AdminClient};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint. Its signing secret (whsec_...) is shown once.
    Create {
        /// Where events are posted (https://...).
        #[arg(long)]
        url: String,
        /// Event types it takes, comma-separated, or * for every one (the default).
        #[arg(long, value_delimiter = ',', default_value = "*")]
        events: Vec<String>,
        /// What the endpoint is for, for the people who read the list.
        #[arg(long, default_value = "")]
        description: String,
        /// Add it paused: its deliveries wait until it is enabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List endpoints, newest first.
    List {
        /// Endpoints per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show an endpoint.
    Show {
        /// The endpoint's id (wh_...).
        id: String,
    },
    /// Change an endpoint's url, events, description, or whether it is paused.
    Update {
        /// The endpoint's id (wh_...).
        id: String,
        /// A new destination.
        #[arg(long)]
        url: Option<String>,
        /// The event types it takes from now on, comma-separated, or *.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// true to pause deliveries (they wait, pending), false to resume them.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Delete an endpoint and its deliveries.
    Delete {
        /// The endpoint's id (wh_...).
        id: String,
    },
    /// A new signing secret, shown once; the old one also signs for 24 hours.
    RotateSecret {
        /// The endpoint's id (wh_...).
        id: String,
    },
    /// Send a webhook.test event to the endpoint, whatever its events.
    Test {
        /// The endpoint's id (wh_...).
        id: String,
    },
    /// The endpoint's deliveries, newest first.
    Deliveries {
        /// The endpoint's id (wh_...).
        id: String,
        /// Deliveries per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Try a failed delivery again now.
    Retry {
        /// The endpoint's id (wh_...).
        id: String,
        /// The delivery's id (dlv_...).
        delivery_id: String,
    },
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// An endpoint as `field value` lines; a new secret last, with how to keep it.
fn endpoint(value: &Value) -> String {
    let mut shown = value.clone();
    let secret = shown
        .as_object_mut()
        .and_then(|object| object.remove("secret"));
    let mut text = admin_client::record(&shown);
    if let Some(secret) = secret.as_ref().and_then(Value::as_str) {
        text.push_str(&format!(
            "\n\nsecret: {secret}\nThis secret is shown once. Verify deliveries with it \
             (Standard Webhooks); it cannot be shown again."
        ));
    }
    text
}

fn deliveries_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            vec![
                cell(&d["id"]),
                cell(&d["type"]),
                cell(&d["state"]),
                cell(&d["attempts"]),
                cell(&d["last_status"]),
                cell(&d["next_attempt_at"]),
                cell(&d["last_error"]),
            ]
        })
        .collect();
    admin_client::table(
        &["ID", "TYPE", "STATE", "ATTEMPTS", "STATUS", "NEXT", "ERROR"],
        &rows,
    )
}

pub async fn webhooks(args: &AdminArgs, command: WebhooksCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        WebhooksCommand::Create {
            url,
            events,
            description,
            disabled,
        } => {
            let body = json!({"url": url, "events": events, "description": description, "disabled": disabled});
            let created = client
                .send(Method::POST, "/webhooks", Some(body), None)
                .await?;
            print(args, &created, endpoint);
        }
        WebhooksCommand::List { limit, cursor } => {
            let path = with_query(
                "/webhooks",
                &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                let rows: Vec<Vec<String>> = page["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|w| {
                        let state = if w["disabled"] == true {
                            "disabled"
                        } else {
                            "enabled"
                        };
                        vec![
                            cell(&w["id"]),
                            cell(&w["url"]),
                            cell(&w["events"]),
                            state.into(),
                        ]
                    })
                    .collect();
                admin_client::table(&["ID", "URL", "EVENTS", "STATE"], &rows)
                    + &admin_client::more(page, "webhooks list")
            });
        }
        WebhooksCommand::Show { id } => {
            let shown = client
                .send(Method::GET, &format!("/webhooks/{id}"), None, None)
                .await?;
            print(args, &shown, endpoint);
        }
        WebhooksCommand::Update {
            id,
            url,
            events,
            description,
            disabled,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(url) = url {
                body.insert("url".into(), json!(url));
            }
            if let Some(events) = events {
                body.insert("events".into(), json!(events));
            }
            if let Some(description) = description {
                body.insert("description".into(), json!(description));
            }
            if let Some(disabled) = disabled {
                body.insert("disabled".into(), json!(disabled));
            }
            if body.is_empty() {
                anyhow::bail!("say what to change: --url, --events, --description or --disabled");
            }
            let changed = client
                .send(
                    Method::PATCH,
                    &format!("/webhooks/{id}"),
                    Some(Value::Object(body)),
                    None,
                )
                .await?;
            print(args, &changed, endpoint);
        }
        WebhooksCommand::Delete { id } => {
            let deleted = client
                .send(Method::DELETE, &format!("/webhooks/{id}"), None, None)
                .await?;
            print(args, &deleted, |_| format!("deleted {id}"));
        }
        WebhooksCommand::RotateSecret { id } => {
            let rotated = client
                .send(
                    Method::POST,
                    &format!("/webhooks/{id}/rotate-secret"),
                    Some(json!({})),
                    None,
                )
                .await?;
            print(args, &rotated, endpoint);
        }
        WebhooksCommand::Test { id } => {
            let queued = client
                .send(
                    Method::POST,
                    &format!("/webhooks/{id}/test"),
                    Some(json!({})),
                    None,
                )
                .await?;
            print(args, &queued, |q| {
                format!(
                    "queued {} ({}); see `tollgate webhooks deliveries {id}`",
                    cell(&q["event_id"]),
                    cell(&q["type"])
                )
            });
        }
        WebhooksCommand::Deliveries { id, limit, cursor } => {
            let path = with_query(
                &format!("/webhooks/{id}/deliveries"),
                &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                deliveries_table(page)
                    + &admin_client::more(page, &format!("webhooks deliveries {id}"))
            });
        }
        WebhooksCommand::Retry { id, delivery_id } => {
            let retried = client
                .send(
                    Method::POST,
                    &format!("/webhooks/{id}/deliveries/{delivery_id}/retry"),
                    Some(json!({})),
                    None,
                )
                .await?;
            print(args, &retried, admin_client::record);
        }
    }
    Ok(())
}

/// `tollgate events`: events after a cursor, oldest first, one JSON document per line.
pub async fn events(
    args: &AdminArgs,
    cursor: Option<String>,
    limit: Option<u32>,
) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let path = with_query(
        "/events",
        &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
    );
    let page = client.send(Method::GET, &path, None, None).await?;
    print(args, &page, |page| {
        let mut lines: Vec<String> = page["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|event| {
                format!(
                    "{}  {}  {}  {}",
                    cell(&event["timestamp"]),
                    cell(&event["id"]),
                    cell(&event["type"]),
                    cell(&event["data"]["id"]),
                )
            })
            .collect();
        lines.push(format!(
            "next: tollgate events --cursor {}",
            cell(&page["next_cursor"])
        ));
        lines.join("\n")
    });
    Ok(())
}
