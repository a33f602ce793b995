//! `tollgate clients ...` and `tollgate users ...`: the apps and people of the
//! authorization-code flow.

use super::admin_client::{self, print, with_query, AdminArgs, AdminClient};
use anyhow::{anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::IsTerminal;

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register an app. A confidential app's secret is printed once.
    Create {
        /// A name for people, shown on the consent page.
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
    /// List apps, newest first.
    List {
        /// Apps per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one app.
    Show {
        /// The app's client id (app_...).
        id: String,
    },
    /// Delete an app: its tokens stop working. Final.
    Revoke {
        /// The app's client id (app_...).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from TOLLGATE_USER_PASSWORD, a prompt, or stdin.
    Create {
        /// The name the user signs in with.
        #[arg(long)]
        username: String,
    },
    /// List users, newest first.
    List {
        /// Users per page, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Where the previous page ended (its "more:" line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Disable a user: they cannot sign in, and every grant issued to them ends for good.
    Disable {
        /// The user's id (usr_...).
        id: String,
    },
    /// Enable a disabled user. Grants that disabling ended stay ended.
    Enable {
        /// The user's id (usr_...).
        id: String,
    },
    /// Change a user: --password sets a new password (every earlier grant ends).
    Update {
        /// The user's id (usr_...).
        id: String,
        /// Set a new password, read from TOLLGATE_USER_PASSWORD, a prompt or stdin (never
        /// from the command line).
        #[arg(long)]
        password: bool,
    },
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
        ClientsCommand::List { limit, cursor } => {
            let path = with_query(
                "/clients",
                &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
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
                let table =
                    admin_client::table(&["CLIENT_ID", "NAME", "TYPE", "SCOPES", "STATUS"], &rows);
                table + &admin_client::more(page, "clients list")
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

/// A password from the variable `env`, else a prompt that does not echo (asked twice),
/// else a line of stdin. Never from the command line, where `ps` would show it.
pub fn read_password_from(env: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(env) {
        return Ok(password);
    }
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ")?;
        let again = rpassword::prompt_password("Repeat it: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(anyhow!(
            "no password: set {env}, type it at the prompt or pipe it on stdin"
        ));
    }
    Ok(password)
}

fn read_password() -> anyhow::Result<String> {
    read_password_from("TOLLGATE_USER_PASSWORD")
}

pub async fn users(args: &AdminArgs, command: UsersCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(args)?;
    let patch = |id: &str, body: Value| {
        let client = &client;
        let path = format!("/users/{id}");
        async move { client.send(Method::PATCH, &path, Some(body), None).await }
    };
    match command {
        UsersCommand::Create { username } => {
            let password = read_password()?;
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
        UsersCommand::List { limit, cursor } => {
            let path = with_query(
                "/users",
                &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
            );
            let page = client.send(Method::GET, &path, None, None).await?;
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
                let table = admin_client::table(&["ID", "USERNAME", "DISABLED", "CREATED"], &rows);
                table + &admin_client::more(page, "users list")
            });
        }
        UsersCommand::Disable { id } => {
            let updated = patch(&id, json!({"disabled": true})).await?;
            print(args, &updated, admin_client::record);
        }
        UsersCommand::Enable { id } => {
            let updated = patch(&id, json!({"disabled": false})).await?;
            print(args, &updated, admin_client::record);
        }
        UsersCommand::Update { id, password } => {
            if !password {
                bail!("nothing to change: pass --password");
            }
            let password = read_password()?;
            let updated = patch(&id, json!({"password": password})).await?;
            print(args, &updated, admin_client::record);
        }
    }
    Ok(())
}
