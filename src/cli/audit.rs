//! `tollgate audit list`: every change, newest first, filtered by who, what and when.

use super::admin_client::{self, print, with_query, AdminArgs, AdminClient};
use crate::config::parse_duration;
use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, newest first.
    List {
        /// Only changes by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. key.revoke.
        #[arg(long)]
        action: Option<String>,
        /// Only changes to this record, e.g. a key id.
        #[arg(long)]
        target: Option<String>,
        /// Only changes at or after this RFC 3339 time.
        #[arg(long, conflicts_with = "since")]
        from: Option<String>,
        /// Only changes within this long before now, e.g. 24h.
        #[arg(long)]
        since: Option<String>,
        /// Only changes before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        /// Entries per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// The fields whose value differs between `before` and `after`.
fn changed(entry: &Value) -> String {
    let (before, after) = (&entry["before"], &entry["after"]);
    let Some(after_fields) = after.as_object() else {
        return if after.is_null() {
            "-".into()
        } else {
            "*".into()
        };
    };
    if before.is_null() {
        return "(created)".into();
    }
    let names: Vec<&str> = after_fields
        .iter()
        .filter(|(name, value)| before.get(name.as_str()) != Some(value))
        .map(|(name, _)| name.as_str())
        .filter(|name| *name != "version")
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(" ")
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub async fn audit(args: &AdminArgs, command: AuditCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let AuditCommand::List {
        actor,
        action,
        target,
        from,
        since,
        to,
        limit,
        cursor,
    } = command;
    let from = match (from, since) {
        (Some(from), _) => Some(from),
        (None, Some(since)) => {
            let window = parse_duration(&since).map_err(|e| anyhow!("--since: {e}"))?;
            Some(crate::clock::rfc3339(
                crate::clock::now_ms() - window.as_millis() as i64,
            ))
        }
        (None, None) => None,
    };
    let path = with_query(
        "/audit",
        &[
            ("actor", actor),
            ("action", action),
            ("target", target),
            ("from", from),
            ("to", to),
            ("limit", limit.map(|l| l.to_string())),
            ("cursor", cursor),
        ],
    );
    let page = client.send(Method::GET, &path, None, None).await?;
    print(args, &page, |page| {
        let rows: Vec<Vec<String>> = page["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                vec![
                    cell(&entry["at"]),
                    cell(&entry["actor"]),
                    cell(&entry["action"]),
                    cell(&entry["target"]),
                    changed(entry),
                ]
            })
            .collect();
        admin_client::table(&["AT", "ACTOR", "ACTION", "TARGET", "CHANGED"], &rows)
            + &admin_client::more(page, "audit list")
    });
    Ok(())
}
