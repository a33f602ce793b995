//! `tollgate clients ...` and `tollgate users ...`: the apps and people of the
//! authorization-code flow.

use super::admin_client::{self, AdminArgs, AdminClient};
use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register an app. A confidential app's secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// public (PKCE only) or confidential (with a client secret).
        #[arg(long = "type", default_value = "confidential")]
        client_type: String,
        /// An exact redirect URI; repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A scope (permission) the app may ask for; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List apps.
    List,
    /// Show one app.
    Show { id: String },
    /// Delete an app: its tokens stop working.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from TOLLGATE_USER_PASSWORD, or stdin.
    Create {
        #[arg(long)]
        username: String,
    },
    /// List users.
    List,
    /// Disable a user: they cannot sign in and their tokens stop working.
    Disable { id: String },
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

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn with_secret(value: &Value) -> String {
    let mut out = admin_client::record(&json!({
        "client_id": value["client_id"], "name": value["name"], "type": value["type"],
        "redirect_uris": value["redirect_uris"], "scopes": value["scopes"],
        "created_at": value["created_at"], "deleted_at": value["deleted_at"],
    }));
    if let Some(secret) = value["client_secret"].as_str() {
        out.push_str(&format!("\n\nclient_secret: {secret}\nThis secret is shown once. Store it now; it cannot be shown again."));
    }
    out
}

pub async fn clients(args: &AdminArgs, command: ClientsCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        ClientsCommand::Create {
            name,
            client_type,
            redirect_uris,
            scopes,
        } => {
            let body = json!({"name": name, "type": client_type, "redirect_uris": redirect_uris, "scopes": scopes});
            let created = client
                .send(Method::POST, "/clients", Some(body), None)
                .await?;
            print(args, &created, with_secret);
        }
        ClientsCommand::List => {
            let page = client
                .send(Method::GET, "/clients?limit=500", None, None)
                .await?;
            print(args, &page, |page| {
                let rows: Vec<Vec<String>> = page["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let status = if c["deleted_at"].is_null() {
                            "active"
                        } else {
                            "deleted"
                        };
                        vec![
                            cell(&c["client_id"]),
                            cell(&c["name"]),
                            cell(&c["type"]),
                            cell(&c["scopes"]),
                            status.into(),
                        ]
                    })
                    .collect();
                admin_client::table(&["CLIENT_ID", "NAME", "TYPE", "SCOPES", "STATUS"], &rows)
            });
        }
        ClientsCommand::Show { id } => {
            let shown = client
                .send(Method::GET, &format!("/clients/{id}"), None, None)
                .await?;
            print(args, &shown, with_secret);
        }
        ClientsCommand::Revoke { id } => {
            let deleted = client
                .send(Method::DELETE, &format!("/clients/{id}"), None, None)
                .await?;
            print(args, &deleted, with_secret);
        }
    }
    Ok(())
}

pub async fn users(args: &AdminArgs, command: UsersCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    match command {
        UsersCommand::Create { username } => {
            let password = match std::env::var("TOLLGATE_USER_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.is_empty() {
                return Err(anyhow!(
                    "no password: set TOLLGATE_USER_PASSWORD or pipe it on stdin"
                ));
            }
            let created = client
                .send(
                    Method::POST,
                    "/users",
                    Some(json!({"username": username, "password": password})),
                    None,
                )
                .await?;
            print(args, &created, admin_client::record);
        }
        UsersCommand::List => {
            let page = client
                .send(Method::GET, "/users?limit=500", None, None)
                .await?;
            print(args, &page, |page| {
                let rows: Vec<Vec<String>> = page["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|u| {
                        vec![
                            cell(&u["id"]),
                            cell(&u["username"]),
                            cell(&u["disabled"]),
                            cell(&u["created_at"]),
                        ]
                    })
                    .collect();
                admin_client::table(&["ID", "USERNAME", "DISABLED", "CREATED"], &rows)
            });
        }
        UsersCommand::Disable { id } => {
            let updated = client
                .send(
                    Method::PATCH,
                    &format!("/users/{id}"),
                    Some(json!({"disabled": true})),
                    None,
                )
                .await?;
            print(args, &updated, admin_client::record);
        }
    }
    Ok(())
}
