//! `tollgate operators ...`, `tollgate tokens ...`, `tollgate whoami` (through the admin
//! API) and `tollgate bootstrap` (straight into the store, before anyone can sign in).

use super::admin_client::{self, print, with_query, AdminArgs, AdminClient};
use super::oauth::read_password_from;
use crate::config::{parse_duration, Config};
use crate::store::records::Actor;
use crate::store::Store;
use anyhow::{anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Add an operator. The password is read from TOLLGATE_OPERATOR_PASSWORD, a prompt or
    /// stdin.
    Create {
        /// Their email: how they sign in (compared without case).
        #[arg(long)]
        email: String,
        /// Their name, as the audit log shows it.
        #[arg(long)]
        name: String,
        /// owner, key_manager, viewer, auditor, or a role of admin.roles.
        #[arg(long)]
        role: String,
    },
    /// List operators, newest first.
    List {
        /// Operators per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one operator.
    Show {
        /// The operator's id (op_...).
        id: String,
    },
    /// Change an operator's name, role or password, or enable them again.
    Update {
        /// The operator's id (op_...).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new role.
        #[arg(long)]
        role: Option<String>,
        /// Enable a disabled operator.
        #[arg(long)]
        enable: bool,
        /// Set a new password (TOLLGATE_OPERATOR_PASSWORD, a prompt or stdin); their
        /// sessions end.
        #[arg(long)]
        password: bool,
    },
    /// Disable an operator: they cannot sign in, and their sessions end.
    Disable {
        /// The operator's id (op_...).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an admin token. The secret is printed once.
    Create {
        /// What the token is for, e.g. ci-deploy.
        #[arg(long)]
        name: String,
        /// An admin permission to give, e.g. keys:read; repeat for several.
        #[arg(long = "permission", conflicts_with = "role")]
        permissions: Vec<String>,
        /// A role to give instead of permissions.
        #[arg(long)]
        role: Option<String>,
        /// An expiry relative to now, e.g. 90d.
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// An RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List admin tokens, newest first (never their secrets).
    List {
        /// Tokens per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Revoke an admin token, on every replica at once. Final.
    Revoke {
        /// The token's id (tok_...).
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// The YAML configuration file (its store is written to).
    #[arg(long, env = "TOLLGATE_CONFIG", default_value = "config/tollgate.yaml")]
    config: std::path::PathBuf,
    /// The first owner's email.
    #[arg(long)]
    email: String,
    /// The first owner's name (default: the part of the email before @).
    #[arg(long)]
    name: Option<String>,
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn rows(page: &Value, columns: &[&str]) -> Vec<Vec<String>> {
    page["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[*c])).collect())
        .collect()
}

pub async fn operators(args: &AdminArgs, command: OperatorsCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let value = match command {
        OperatorsCommand::Create { email, name, role } => {
            let password = read_password_from("TOLLGATE_OPERATOR_PASSWORD")?;
            let body = json!({"email": email, "name": name, "role": role, "password": password});
            client
                .send(Method::POST, "/operators", Some(body), None)
                .await?
        }
        OperatorsCommand::List { limit, cursor } => {
            let path = with_query(
                "/operators",
                &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                let columns = ["id", "email", "name", "role", "disabled"];
                admin_client::table(
                    &["ID", "EMAIL", "NAME", "ROLE", "DISABLED"],
                    &rows(page, &columns),
                ) + &admin_client::more(page, "operators list")
            });
            return Ok(());
        }
        OperatorsCommand::Show { id } => {
            client
                .send(Method::GET, &format!("/operators/{id}"), None, None)
                .await?
        }
        OperatorsCommand::Update {
            id,
            name,
            role,
            enable,
            password,
        } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            if let Some(role) = role {
                body.insert("role".into(), json!(role));
            }
            if enable {
                body.insert("disabled".into(), json!(false));
            }
            if password {
                let password = read_password_from("TOLLGATE_OPERATOR_PASSWORD")?;
                body.insert("password".into(), json!(password));
            }
            if body.is_empty() {
                bail!("nothing to change: pass --name, --role, --enable or --password");
            }
            client
                .send(
                    Method::PATCH,
                    &format!("/operators/{id}"),
                    Some(Value::Object(body)),
                    None,
                )
                .await?
        }
        OperatorsCommand::Disable { id } => {
            client
                .send(
                    Method::PATCH,
                    &format!("/operators/{id}"),
                    Some(json!({"disabled": true})),
                    None,
                )
                .await?
        }
    };
    print(args, &value, admin_client::record);
    Ok(())
}

pub async fn tokens(args: &AdminArgs, command: TokensCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        TokensCommand::Create {
            name,
            permissions,
            role,
            expires_in,
            expires_at,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            match role {
                Some(role) => body.insert("role".into(), json!(role)),
                None => body.insert("permissions".into(), json!(permissions)),
            };
            let expires = match (expires_at, expires_in) {
                (Some(at), _) => Some(at),
                (None, Some(within)) => {
                    let duration =
                        parse_duration(&within).map_err(|e| anyhow!("--expires-in: {e}"))?;
                    Some(crate::clock::rfc3339(
                        crate::clock::now_ms() + duration.as_millis() as i64,
                    ))
                }
                (None, None) => None,
            };
            if let Some(at) = expires {
                body.insert("expires_at".into(), json!(at));
            }
            let created = client
                .send(Method::POST, "/tokens", Some(Value::Object(body)), None)
                .await?;
            print(args, &created, |token| {
                let mut shown = token.clone();
                let secret = shown
                    .as_object_mut()
                    .and_then(|o| o.remove("token"))
                    .and_then(|t| t.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!(
                    "{}\n\ntoken: {secret}\nThis secret is shown once. Store it now; it cannot be shown again.",
                    admin_client::record(&shown)
                )
            });
        }
        TokensCommand::List { limit, cursor } => {
            let path = with_query(
                "/tokens",
                &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
            print(args, &page, |page| {
                let columns = [
                    "id",
                    "name",
                    "start",
                    "effective_permissions",
                    "expires_at",
                    "revoked_at",
                    "last_used_at",
                ];
                admin_client::table(
                    &[
                        "ID",
                        "NAME",
                        "START",
                        "PERMISSIONS",
                        "EXPIRES",
                        "REVOKED",
                        "LAST USED",
                    ],
                    &rows(page, &columns),
                ) + &admin_client::more(page, "tokens list")
            });
        }
        TokensCommand::Revoke { id } => {
            let revoked = client
                .send(
                    Method::POST,
                    &format!("/tokens/{id}/revoke"),
                    Some(json!({})),
                    None,
                )
                .await?;
            print(args, &revoked, admin_client::record);
        }
    }
    Ok(())
}

pub async fn whoami(args: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let me = client.send(Method::GET, "/me", None, None).await?;
    print(args, &me, admin_client::record);
    Ok(())
}

/// Creates the first owner straight into the store; refuses once an owner exists.
pub async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)
        .map_err(|errors| anyhow!("{}:\n{errors}", args.config.display()))?;
    let store = Store::open(&config.store.url).await?;
    if store.owner_count().await? > 0 {
        bail!("an owner exists already; owners add operators with `tollgate operators create`");
    }
    let password = read_password_from("TOLLGATE_OWNER_PASSWORD")?;
    let name = args
        .name
        .unwrap_or_else(|| args.email.split('@').next().unwrap_or("owner").to_string());
    let now = crate::clock::now_ms();
    let email = args.email.clone();
    let owner = tokio::task::spawn_blocking(move || {
        crate::admin::new_operator(&email, &name, "owner", &password, now)
    })
    .await?
    .map_err(|error| anyhow!("{error}"))?;
    let saved = store
        .insert_operator(&owner, &Actor::system("bootstrap"), now)
        .await
        .map_err(|error| anyhow!("cannot create the owner: {error}"))?;
    store.close().await;
    println!(
        "created the owner {} ({}); sign in to the console with this email",
        saved.email, saved.id
    );
    Ok(())
}
