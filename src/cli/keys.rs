//! `tollgate keys ...` and `tollgate policy ...`.

use super::admin_client::{self, AdminArgs, AdminClient};
use crate::config::parse_duration;
use anyhow::{anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key. The secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// fine_grained (default) or legacy.
        #[arg(long = "type")]
        key_type: Option<String>,
        /// A permission to grant; repeat for several.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// A preset from the config to start from.
        #[arg(long)]
        preset: Option<String>,
        /// The role of a legacy key.
        #[arg(long)]
        role: Option<String>,
        /// An address or CIDR the key may be used from; repeat for several.
        #[arg(long = "ip")]
        ip_allowlist: Vec<String>,
        #[arg(long)]
        allow_infrastructure_ips: bool,
        /// An RFC 3339 expiry.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// An expiry relative to now, e.g. 30d.
        #[arg(long)]
        expires_in: Option<String>,
        /// live or test (default: the gateway's).
        #[arg(long)]
        environment: Option<String>,
        /// The key's own limits: PER_MINUTE/PER_DAY, e.g. 1000/100000.
        #[arg(long)]
        rate_limit: Option<String>,
        /// key=value metadata; repeat for several.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        /// Makes a retried create safe.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List keys, oldest first.
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one key.
    Show { id: String },
    /// Issue a new secret; the old one stops at once, or after --grace.
    Rotate {
        id: String,
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<String>,
        #[arg(long)]
        expires_in: Option<String>,
        /// How long the old secret keeps working, e.g. 1h.
        #[arg(long)]
        grace: Option<String>,
    },
    /// Revoke a key. Final.
    Revoke { id: String },
    /// Requests per day by outcome.
    Usage {
        id: String,
        #[arg(long)]
        days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the organisation-wide key policy.
    Show,
    /// Change the policy; options left out keep their value.
    Set {
        /// true or false.
        #[arg(long)]
        block_legacy_keys: Option<bool>,
        /// A duration such as 90d, or `none` to remove the limit.
        #[arg(long)]
        max_key_lifetime: Option<String>,
    },
}

fn expiry(at: Option<String>, within: Option<String>) -> anyhow::Result<Option<String>> {
    match (at, within) {
        (Some(at), _) => Ok(Some(at)),
        (None, Some(within)) => {
            let duration = parse_duration(&within).map_err(|e| anyhow!("--expires-in: {e}"))?;
            Ok(Some(crate::clock::rfc3339(
                crate::clock::now_ms() + duration.as_millis() as i64,
            )))
        }
        (None, None) => Ok(None),
    }
}

fn print(args: &AdminArgs, value: &Value, readable: impl FnOnce(&Value) -> String) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", readable(value));
    }
}

pub async fn keys(args: &AdminArgs, command: KeysCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        KeysCommand::Create {
            name,
            key_type,
            permissions,
            preset,
            role,
            ip_allowlist,
            allow_infrastructure_ips,
            expires_at,
            expires_in,
            environment,
            rate_limit,
            metadata,
            idempotency_key,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            let mut put = |field: &str, value: Value| {
                body.insert(field.into(), value);
            };
            if let Some(key_type) = key_type {
                put("type", json!(key_type));
            }
            if !permissions.is_empty() {
                put("permissions", json!(permissions));
            }
            if let Some(preset) = preset {
                put("preset", json!(preset));
            }
            if let Some(role) = role {
                put("role", json!(role));
            }
            if !ip_allowlist.is_empty() {
                put("ip_allowlist", json!(ip_allowlist));
            }
            if allow_infrastructure_ips {
                put("allow_infrastructure_ips", json!(true));
            }
            if let Some(at) = expiry(expires_at, expires_in)? {
                put("expires_at", json!(at));
            }
            if let Some(environment) = environment {
                put("environment", json!(environment));
            }
            if let Some(limit) = rate_limit {
                let (minute, day) = limit
                    .split_once('/')
                    .and_then(|(m, d)| Some((m.parse::<u64>().ok()?, d.parse::<u64>().ok()?)))
                    .ok_or_else(|| {
                        anyhow!("--rate-limit must be PER_MINUTE/PER_DAY, e.g. 1000/100000")
                    })?;
                put("rate_limit", json!({"per_minute": minute, "per_day": day}));
            }
            if !metadata.is_empty() {
                let mut map = Map::new();
                for pair in metadata {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| anyhow!("--metadata must be key=value"))?;
                    map.insert(k.into(), json!(v));
                }
                put("metadata", Value::Object(map));
            }
            let created = client
                .send(
                    Method::POST,
                    "/keys",
                    Some(Value::Object(body)),
                    idempotency_key.as_deref(),
                )
                .await?;
            print(args, &created, admin_client::record);
        }
        KeysCommand::List { limit, cursor } => {
            let mut query = Vec::new();
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if let Some(cursor) = cursor {
                query.push(format!("cursor={cursor}"));
            }
            let path = if query.is_empty() {
                "/keys".to_string()
            } else {
                format!("/keys?{}", query.join("&"))
            };
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                let keys = page["data"].as_array().cloned().unwrap_or_default();
                let mut out = admin_client::keys_table(&keys);
                if let Some(next) = page["next_cursor"].as_str() {
                    out.push_str(&format!("\nmore: tollgate keys list --cursor {next}"));
                }
                out
            });
        }
        KeysCommand::Show { id } => {
            let key = client
                .send(Method::GET, &format!("/keys/{id}"), None, None)
                .await?;
            print(args, &key, admin_client::record);
        }
        KeysCommand::Rotate {
            id,
            expires_at,
            expires_in,
            grace,
        } => {
            let mut body = Map::new();
            if let Some(at) = expiry(expires_at, expires_in)? {
                body.insert("expires_at".into(), json!(at));
            }
            if let Some(grace) = grace {
                body.insert("grace".into(), json!(grace));
            }
            let rotated = client
                .send(
                    Method::POST,
                    &format!("/keys/{id}/rotate"),
                    Some(Value::Object(body)),
                    None,
                )
                .await?;
            print(args, &rotated, admin_client::record);
        }
        KeysCommand::Revoke { id } => {
            let revoked = client
                .send(
                    Method::POST,
                    &format!("/keys/{id}/revoke"),
                    Some(json!({})),
                    None,
                )
                .await?;
            print(args, &revoked, admin_client::record);
        }
        KeysCommand::Usage { id, days } => {
            let path = match days {
                Some(days) => format!("/keys/{id}/usage?days={days}"),
                None => format!("/keys/{id}/usage"),
            };
            let usage = client.send(Method::GET, &path, None, None).await?;
            print(args, &usage, admin_client::usage_table);
        }
    }
    Ok(())
}

pub async fn policy(args: &AdminArgs, command: PolicyCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let value = match command {
        PolicyCommand::Show => client.send(Method::GET, "/policy", None, None).await?,
        PolicyCommand::Set {
            block_legacy_keys,
            max_key_lifetime,
        } => {
            let mut body = Map::new();
            if let Some(block) = block_legacy_keys {
                body.insert("block_legacy_keys".into(), json!(block));
            }
            match max_key_lifetime.as_deref() {
                None => {}
                Some("none") | Some("null") => {
                    body.insert("max_key_lifetime".into(), Value::Null);
                }
                Some(lifetime) => {
                    body.insert("max_key_lifetime".into(), json!(lifetime));
                }
            }
            if body.is_empty() {
                bail!("nothing to set: pass --block-legacy-keys and/or --max-key-lifetime");
            }
            client
                .send(Method::PUT, "/policy", Some(Value::Object(body)), None)
                .await?
        }
    };
    print(args, &value, admin_client::policy);
    Ok(())
}
