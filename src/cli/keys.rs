//! `tollgate keys ...` and `tollgate policy ...`.

use super::admin_client::{self, print, with_query, AdminArgs, AdminClient, Answer};
use crate::config::parse_duration;
use anyhow::{anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

// Parsed once per process, so the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key. The secret is printed once.
    Create {
        /// A name for people, e.g. salesforce-production.
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
        /// Also allow the config's infrastructure_ips (alone, when no --ip is given).
        #[arg(long)]
        allow_infrastructure_ips: bool,
        /// Bind the key to one client certificate, by its SHA-256 fingerprint (as
        /// `openssl x509 -noout -fingerprint -sha256` prints it, or 64 hex digits).
        #[arg(long)]
        client_cert_sha256: Option<String>,
        /// An RFC 3339 expiry, e.g. 2027-02-01T00:00:00Z.
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
        /// The owner (own_...) whose shared rate limit the key also counts in.
        #[arg(long)]
        owner: Option<String>,
        /// Credits the key starts with; each allowed request spends its route's cost.
        #[arg(long)]
        credits: Option<u64>,
        /// With --credits: set the balance back to AMOUNT each day or month, as
        /// day:AMOUNT or month:AMOUNT.
        #[arg(long, requires = "credits")]
        refill: Option<String>,
        /// Makes a retried create safe: the same key and body within 24 h create one key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List keys, newest first.
    List {
        /// Keys per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
        /// Only keys that are active, expiring (within 7 days), expired or revoked.
        #[arg(long)]
        status: Option<String>,
        /// Only fine_grained or legacy keys.
        #[arg(long = "type")]
        key_type: Option<String>,
    },
    /// Show one key.
    Show {
        /// The key's id (key_...).
        id: String,
    },
    /// Change a key's name, permissions, allowlist, infrastructure flag, rate limit or
    /// metadata. Options left out keep their value; a repeated option replaces the list.
    Update {
        /// The key's id (key_...).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// The permissions, replacing the current ones; repeat for several.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// The allowlist, replacing the current one; repeat for several.
        #[arg(long = "ip", conflicts_with = "any_ip")]
        ip_allowlist: Vec<String>,
        /// Empty the allowlist: any address (or only the infrastructure_ips with that flag).
        #[arg(long)]
        any_ip: bool,
        /// true or false: also allow the config's infrastructure_ips.
        #[arg(long)]
        allow_infrastructure_ips: Option<bool>,
        /// The key's own limits as PER_MINUTE/PER_DAY, or `none` for its tier's.
        #[arg(long)]
        rate_limit: Option<String>,
        /// key=value metadata, replacing the current metadata; repeat for several.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        /// Move the key to this owner (own_...), or `none` to take it from its owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Issue a new secret; the old one stops at once, or after --grace.
    Rotate {
        /// The key's id (key_...).
        id: String,
        /// The new secret's RFC 3339 expiry.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// The new secret's expiry relative to now, e.g. 90d.
        #[arg(long)]
        expires_in: Option<String>,
        /// How long the old secret keeps working, e.g. 1h (at most 7d).
        #[arg(long)]
        grace: Option<String>,
        /// A new allowlist for the key, from this rotation on; repeat for several.
        #[arg(long = "ip")]
        ip_allowlist: Vec<String>,
        /// Makes a retried rotation safe: the same key and body within 24 h rotate once.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Revoke a key. Final.
    Revoke {
        /// The key's id (key_...).
        id: String,
    },
    /// Change a key's credits: set, increment or decrement, from the balance spent so far.
    Credits {
        /// The key's id (key_...).
        id: String,
        /// set, increment or decrement.
        #[arg(value_parser = ["set", "increment", "decrement"])]
        op: String,
        /// How many credits.
        amount: u64,
    },
    /// Requests per day by outcome.
    Usage {
        /// The key's id (key_...).
        id: String,
        /// How many days back, 1 to 366 (default 30).
        #[arg(long, conflicts_with = "hours")]
        days: Option<u32>,
        /// Draw the requests of the last HOURS hours (1 to 720), hour by hour, by outcome.
        #[arg(long)]
        hours: Option<u32>,
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

/// `credits` of a create: the balance and, from `day:AMOUNT` or `month:AMOUNT`, its refill.
pub(super) fn credits(remaining: u64, refill: Option<&str>) -> anyhow::Result<Value> {
    let refill = match refill {
        None => Value::Null,
        Some(text) => {
            let (interval, amount) = text
                .split_once(':')
                .filter(|(interval, _)| matches!(*interval, "day" | "month"))
                .and_then(|(interval, amount)| Some((interval, amount.parse::<u64>().ok()?)))
                .ok_or_else(|| {
                    anyhow!("--refill must be day:AMOUNT or month:AMOUNT, e.g. day:1000")
                })?;
            json!({"interval": interval, "amount": amount})
        }
    };
    Ok(json!({"remaining": remaining, "refill": refill}))
}

pub(super) fn rate_limit(text: &str) -> anyhow::Result<Value> {
    if text == "none" {
        return Ok(Value::Null);
    }
    let (minute, day) = text
        .split_once('/')
        .and_then(|(m, d)| Some((m.parse::<u64>().ok()?, d.parse::<u64>().ok()?)))
        .ok_or_else(|| anyhow!("--rate-limit must be PER_MINUTE/PER_DAY, e.g. 1000/100000"))?;
    Ok(json!({"per_minute": minute, "per_day": day}))
}

pub(super) fn metadata(pairs: Vec<String>) -> anyhow::Result<Value> {
    let mut map = Map::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--metadata must be key=value"))?;
        map.insert(k.into(), json!(v));
    }
    Ok(Value::Object(map))
}

/// A key with its secret, or a replay of one (which never carries the secret again).
fn print_minted(args: &AdminArgs, answer: &Answer) {
    print(args, &answer.body, admin_client::record);
    if answer.replayed && !args.json {
        println!("\nreplayed: the secret was shown on the first response");
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
            client_cert_sha256,
            expires_at,
            expires_in,
            environment,
            rate_limit,
            metadata,
            owner,
            credits,
            refill,
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
            if let Some(fingerprint) = client_cert_sha256 {
                put("client_cert_sha256", json!(fingerprint));
            }
            if let Some(at) = expiry(expires_at, expires_in)? {
                put("expires_at", json!(at));
            }
            if let Some(environment) = environment {
                put("environment", json!(environment));
            }
            if let Some(limit) = rate_limit {
                put("rate_limit", self::rate_limit(&limit)?);
            }
            if !metadata.is_empty() {
                put("metadata", self::metadata(metadata)?);
            }
            if let Some(owner) = owner {
                put("owner_id", json!(owner));
            }
            if let Some(remaining) = credits {
                put("credits", self::credits(remaining, refill.as_deref())?);
            }
            let created = client
                .answer(
                    Method::POST,
                    "/keys",
                    Some(Value::Object(body)),
                    idempotency_key.as_deref(),
                )
                .await?;
            print_minted(args, &created);
        }
        KeysCommand::List {
            limit,
            cursor,
            status,
            key_type,
        } => {
            let path = with_query(
                "/keys",
                &[
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor),
                    ("status", status),
                    ("type", key_type),
                ],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                let keys = page["data"].as_array().cloned().unwrap_or_default();
                let mut out = admin_client::keys_table(&keys);
                out.push_str(&admin_client::more(page, "keys list"));
                out
            });
        }
        KeysCommand::Update {
            id,
            name,
            permissions,
            ip_allowlist,
            any_ip,
            allow_infrastructure_ips,
            rate_limit,
            metadata,
            owner,
        } => {
            let mut body = Map::new();
            if let Some(owner) = owner {
                let owner = if owner == "none" {
                    Value::Null
                } else {
                    json!(owner)
                };
                body.insert("owner_id".into(), owner);
            }
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            if !permissions.is_empty() {
                body.insert("permissions".into(), json!(permissions));
            }
            if any_ip || !ip_allowlist.is_empty() {
                body.insert("ip_allowlist".into(), json!(ip_allowlist));
            }
            if let Some(flag) = allow_infrastructure_ips {
                body.insert("allow_infrastructure_ips".into(), json!(flag));
            }
            if let Some(limit) = rate_limit {
                body.insert("rate_limit".into(), self::rate_limit(&limit)?);
            }
            if !metadata.is_empty() {
                body.insert("metadata".into(), self::metadata(metadata)?);
            }
            if body.is_empty() {
                bail!("nothing to change: pass at least one option (see --help)");
            }
            let updated = client
                .send(
                    Method::PATCH,
                    &format!("/keys/{id}"),
                    Some(Value::Object(body)),
                    None,
                )
                .await?;
            print(args, &updated, admin_client::record);
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
            ip_allowlist,
            idempotency_key,
        } => {
            let mut body = Map::new();
            if let Some(at) = expiry(expires_at, expires_in)? {
                body.insert("expires_at".into(), json!(at));
            }
            if let Some(grace) = grace {
                body.insert("grace".into(), json!(grace));
            }
            if !ip_allowlist.is_empty() {
                body.insert("ip_allowlist".into(), json!(ip_allowlist));
            }
            let rotated = client
                .answer(
                    Method::POST,
                    &format!("/keys/{id}/rotate"),
                    Some(Value::Object(body)),
                    idempotency_key.as_deref(),
                )
                .await?;
            print_minted(args, &rotated);
        }
        KeysCommand::Credits { id, op, amount } => {
            let changed = client
                .send(
                    Method::POST,
                    &format!("/keys/{id}/credits"),
                    Some(json!({"op": op, "amount": amount})),
                    None,
                )
                .await?;
            print(args, &changed, admin_client::record);
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
        KeysCommand::Usage {
            id,
            hours: Some(hours),
            ..
        } => {
            if !(1..=720).contains(&hours) {
                bail!("--hours must be 1 to 720");
            }
            let now = crate::clock::now_ms();
            let from = crate::clock::rfc3339(now - i64::from(hours) * 3_600_000);
            let path = with_query(
                "/analytics",
                &[
                    ("key_id", Some(id)),
                    ("from", Some(from)),
                    ("granularity", Some("hour".into())),
                    ("group_by", Some("outcome".into())),
                ],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                super::usage_chart::hourly(page, hours, now)
            });
        }
        KeysCommand::Usage { id, days, .. } => {
            let path = with_query(
                &format!("/keys/{id}/usage"),
                &[("days", days.map(|d| d.to_string()))],
            );
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
