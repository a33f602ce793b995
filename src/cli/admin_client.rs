//! The CLI side of the admin API: `tollgate keys ...` and `tollgate policy ...` send
//! requests and print readable tables, or JSON with `--json`.

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the admin API.
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub admin_url: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        Ok(AdminClient {
            base: format!("{}/admin/v1", args.admin_url.trim_end_matches('/')),
            token: std::env::var("TOLLGATE_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    /// Sends a request; an error answer becomes `code: message`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or("");
        let hint = if code == "unauthorized" && self.token.is_none() {
            " (set TOLLGATE_ADMIN_TOKEN)"
        } else {
            ""
        };
        Err(anyhow!("{status}: {code}: {message}{hint}"))
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// A key's status in one word.
fn status(key: &Value) -> &'static str {
    if !key["revoked_at"].is_null() {
        "revoked"
    } else if key["expires_at"]
        .as_str()
        .and_then(crate::clock::parse_rfc3339)
        .is_some_and(|at| at <= crate::clock::now_ms())
    {
        "expired"
    } else {
        "active"
    }
}

/// Columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|row| line(row.clone())));
    out.join("\n")
}

pub fn keys_table(keys: &[Value]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let grants = if k["type"] == "legacy" {
                format!("role:{}", text(&k["role"]))
            } else {
                text(&k["permissions"])
            };
            vec![
                text(&k["id"]),
                text(&k["name"]),
                text(&k["type"]),
                text(&k["start"]),
                grants,
                text(&k["expires_at"]),
                status(k).to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "TYPE",
            "START",
            "PERMISSIONS",
            "EXPIRES",
            "STATUS",
        ],
        &rows,
    )
}

/// One record as `field: value` lines; the secret, when present, last and flagged.
pub fn record(value: &Value) -> String {
    let mut lines = Vec::new();
    if let Some(object) = value.as_object() {
        let width = object.keys().map(String::len).max().unwrap_or(0);
        for (field, v) in object {
            if field != "key" {
                lines.push(format!("{field:<width$}  {}", text(v)));
            }
        }
        if let Some(secret) = object.get("key").and_then(Value::as_str) {
            lines.push(String::new());
            lines.push(format!("key: {secret}"));
            lines.push("This secret is shown once. Store it now; it cannot be shown again.".into());
        }
    }
    lines.join("\n")
}

pub fn usage_table(value: &Value) -> String {
    let days = value["days"].as_array().cloned().unwrap_or_default();
    let mut outcomes: Vec<String> = days
        .iter()
        .filter_map(|d| d["outcomes"].as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    outcomes.sort();
    outcomes.dedup();
    let mut headers = vec!["DATE".to_string(), "TOTAL".to_string()];
    headers.extend(outcomes.iter().map(|o| o.to_uppercase()));
    let rows: Vec<Vec<String>> = days
        .iter()
        .map(|d| {
            let mut row = vec![text(&d["date"]), text(&d["total"])];
            row.extend(
                outcomes
                    .iter()
                    .map(|o| d["outcomes"].get(o).map_or("0".into(), text)),
            );
            row
        })
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    format!(
        "last used: {}\n{}",
        text(&value["last_used_at"]),
        table(&headers, &rows)
    )
}

pub fn policy(value: &Value) -> String {
    record(&json!({
        "block_legacy_keys": value["block_legacy_keys"],
        "max_key_lifetime": value["max_key_lifetime"],
    }))
}
