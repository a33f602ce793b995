//! `tollgate owners …`: the customers keys are issued to, whose rate limit all their keys
//! share (SPEC 15), through the admin API.

use super::admin_client::{self, print, with_query, AdminArgs, AdminClient};
use super::keys::{credits, metadata, rate_limit};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

#[derive(Debug, Subcommand)]
pub enum OwnersCommand {
    /// Add an owner. Give its keys `--owner ID` to have them share its limit.
    Create {
        /// Who the owner is, e.g. the customer's company name.
        #[arg(long)]
        name: String,
        /// Your own id for the customer (unique), to find it by.
        #[arg(long)]
        external_id: Option<String>,
        /// Limits all its keys share: PER_MINUTE/PER_DAY, e.g. 100/10000.
        #[arg(long)]
        rate_limit: Option<String>,
        /// key=value metadata; repeat for several.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        /// Credits all its keys spend from; each allowed request spends its route's cost.
        #[arg(long)]
        credits: Option<u64>,
        /// With --credits: set the balance back to AMOUNT each day or month, as
        /// day:AMOUNT or month:AMOUNT.
        #[arg(long, requires = "credits")]
        refill: Option<String>,
    },
    /// List owners, newest first.
    List {
        /// Only the owner with this external id.
        #[arg(long)]
        external_id: Option<String>,
        /// Owners per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show an owner and its keys.
    Show {
        /// The owner's id (own_...).
        id: String,
    },
    /// Change an owner's name, external id, shared limit or metadata.
    Update {
        /// The owner's id (own_...).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new external id, or `none` to clear it.
        #[arg(long)]
        external_id: Option<String>,
        /// The shared limits as PER_MINUTE/PER_DAY, or `none` for no shared limit.
        #[arg(long)]
        rate_limit: Option<String>,
        /// key=value metadata, replacing the current metadata; repeat for several.
        #[arg(long = "metadata")]
        metadata: Vec<String>,
    },
    /// Change an owner's credits: set, increment or decrement, from the balance spent so far.
    Credits {
        /// The owner's id (own_...).
        id: String,
        /// set, increment or decrement.
        #[arg(value_parser = ["set", "increment", "decrement"])]
        op: String,
        /// How many credits.
        amount: u64,
    },
}

fn owners_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|owner| {
            vec![
                owner["id"].as_str().unwrap_or("-").to_string(),
                owner["name"].as_str().unwrap_or("-").to_string(),
                owner["external_id"].as_str().unwrap_or("-").to_string(),
                limit_text(&owner["rate_limit"]),
            ]
        })
        .collect();
    admin_client::table(&["ID", "NAME", "EXTERNAL ID", "RATE LIMIT"], &rows)
}

/// `100/min, 10000/day`, or `-` for none.
fn limit_text(limit: &Value) -> String {
    match (limit["per_minute"].as_u64(), limit["per_day"].as_u64()) {
        (Some(minute), Some(day)) => format!("{minute}/min, {day}/day"),
        _ => "-".into(),
    }
}

pub async fn owners(args: &AdminArgs, command: OwnersCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        OwnersCommand::Create {
            name,
            external_id,
            rate_limit: limit,
            metadata: pairs,
            credits: remaining,
            refill,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            if let Some(remaining) = remaining {
                body.insert("credits".into(), credits(remaining, refill.as_deref())?);
            }
            if let Some(external_id) = external_id {
                body.insert("external_id".into(), json!(external_id));
            }
            if let Some(limit) = limit {
                body.insert("rate_limit".into(), rate_limit(&limit)?);
            }
            if !pairs.is_empty() {
                body.insert("metadata".into(), metadata(pairs)?);
            }
            let created = client
                .send(Method::POST, "/owners", Some(Value::Object(body)), None)
                .await?;
            print(args, &created, admin_client::record);
        }
        OwnersCommand::List {
            external_id,
            limit,
            cursor,
        } => {
            let path = with_query(
                "/owners",
                &[
                    ("external_id", external_id),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor),
                ],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                owners_table(page) + &admin_client::more(page, "owners list")
            });
        }
        OwnersCommand::Show { id } => {
            let owner = client
                .send(Method::GET, &format!("/owners/{id}"), None, None)
                .await?;
            let keys = client
                .send(Method::GET, &format!("/owners/{id}/keys"), None, None)
                .await?;
            let shown = json!({"owner": owner, "keys": keys["data"]});
            print(args, &shown, |shown| {
                let keys = shown["keys"].as_array().cloned().unwrap_or_default();
                format!(
                    "{}\n\nkeys:\n{}",
                    admin_client::record(&shown["owner"]),
                    admin_client::keys_table(&keys)
                )
            });
        }
        OwnersCommand::Update {
            id,
            name,
            external_id,
            rate_limit: limit,
            metadata: pairs,
        } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            if let Some(external_id) = external_id {
                let value = if external_id == "none" {
                    Value::Null
                } else {
                    json!(external_id)
                };
                body.insert("external_id".into(), value);
            }
            if let Some(limit) = limit {
                body.insert("rate_limit".into(), rate_limit(&limit)?);
            }
            if !pairs.is_empty() {
                body.insert("metadata".into(), metadata(pairs)?);
            }
            if body.is_empty() {
                anyhow::bail!(
                    "say what to change: --name, --external-id, --rate-limit or --metadata"
                );
            }
            let changed = client
                .send(
                    Method::PATCH,
                    &format!("/owners/{id}"),
                    Some(Value::Object(body)),
                    None,
                )
                .await?;
            print(args, &changed, admin_client::record);
        }
        OwnersCommand::Credits { id, op, amount } => {
            let changed = client
                .send(
                    Method::POST,
                    &format!("/owners/{id}/credits"),
                    Some(json!({"op": op, "amount": amount})),
                    None,
                )
                .await?;
            print(args, &changed, admin_client::record);
        }
    }
    Ok(())
}
