//! The CLI side of the admin API: requests, readable tables, or JSON with `--json`.

use anyhow::Context;
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
    /// The operator token. Prefer the TOLLGATE_ADMIN_TOKEN variable: a flag shows in the
    /// process list.
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Print the API's JSON instead of a table; errors are JSON on stderr too.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A refusal from the admin API, as it answered.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {code}: {message}{hint}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    hint: &'static str,
}

impl ApiError {
    pub fn to_json(&self) -> Value {
        json!({"error": {
            "status": self.status, "code": self.code, "message": self.message,
            "request_id": self.request_id,
        }})
    }
}

/// An answer: the body, and whether it replays an earlier request's (`Idempotency-Key`).
pub struct Answer {
    pub body: Value,
    pub replayed: bool,
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
            token: args.admin_token.clone().filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    /// Sends a request; an error answer becomes an [`ApiError`].
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        Ok(self.answer(method, path, body, idempotency_key).await?.body)
    }

    /// [`AdminClient::send`], saying whether the answer is a replay.
    pub async fn answer(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
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
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Answer {
                body: value,
                replayed,
            });
        }
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            " (set TOLLGATE_ADMIN_TOKEN, or pass --admin-token)"
        } else {
            ""
        };
        Err(ApiError {
            status: status.as_u16(),
            code: value["error"]["code"].as_str().unwrap_or("error").into(),
            message: value["error"]["message"].as_str().unwrap_or("").into(),
            request_id: value["error"]["request_id"].as_str().map(str::to_string),
            hint,
        }
        .into())
    }
}

/// `path?name=value&...` with the values that are set, encoded.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_string()
    }
}

/// Prints `value` as JSON, or readably.
pub fn print(args: &AdminArgs, value: &Value, readable: impl FnOnce(&Value) -> String) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", readable(value));
    }
}

/// The line under a list that has more: how to get the next page.
pub fn more(page: &Value, command: &str) -> String {
    match page["next_cursor"].as_str() {
        Some(next) => format!("\nmore: tollgate {command} --cursor {next}"),
        None => String::new(),
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

/// A key's status in one word, as `GET /keys?status=` filters by it.
fn status(key: &Value) -> &'static str {
    let at = |field: &str| key[field].as_str().and_then(crate::clock::parse_rfc3339);
    crate::store::records::KeyStatus::of(at("revoked_at"), at("expires_at"), crate::clock::now_ms())
        .as_str()
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

/// Where a key may be used from, in words, from its allowlist and infrastructure flag.
pub fn allowed_from(key: &Value) -> Option<&'static str> {
    let listed = key["ip_allowlist"].as_array()?.is_empty();
    let infrastructure = key["allow_infrastructure_ips"].as_bool()?;
    Some(match (listed, infrastructure) {
        (true, false) => "any address",
        (true, true) => "the infrastructure_ips only",
        (false, false) => "the ip_allowlist",
        (false, true) => "the ip_allowlist and the infrastructure_ips",
    })
}

/// One record as `field: value` lines; the secret, when present, last and flagged.
pub fn record(value: &Value) -> String {
    let mut lines = Vec::new();
    if let Some(object) = value.as_object() {
        let width = object.keys().map(String::len).max().unwrap_or(0).max(12);
        for (field, v) in object {
            if field != "key" {
                lines.push(format!("{field:<width$}  {}", text(v)));
            }
        }
        if let Some(from) = allowed_from(value) {
            lines.push(format!("{:<width$}  {from}", "allowed_from"));
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
