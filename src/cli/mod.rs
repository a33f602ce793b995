//! The command line of SPEC section 1.

mod admin_client;
mod audit;
mod demo;
mod keys;
mod oauth;
mod owners;
mod usage_chart;
mod webhooks;
mod workbench;

use crate::config::Config;
use crate::server::{self, ServeOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A reverse-proxy authentication gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The YAML configuration file.
    #[arg(long, env = "TOLLGATE_CONFIG", default_value = "config/tollgate.yaml")]
    config: PathBuf,
}

// Parsed once per process, so the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: data plane, admin API and metrics.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Take the listening sockets over from the running instance (via upgrade_sock),
        /// then SIGQUIT the old one to let it drain.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration file and print every error with its path and line.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A zero-setup tour: an echo API, the gateway in front of it, and curl lines to try.
    Demo(demo::DemoArgs),
    /// Run the built-in echo API alone (an upstream for trials and benchmarks).
    Echo {
        /// The address to answer on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
    },
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600), for replicas to share; or,
    /// with --tls-names, a self-signed TLS certificate and its key.
    Keygen {
        /// The file to write; an existing file is never overwritten. With --tls-names, the
        /// certificate (NAME.pem), its key going beside it as NAME.key.
        #[arg(long)]
        out: PathBuf,
        /// Host names or addresses, comma separated, for a self-signed TLS certificate
        /// (for trying HTTPS; use certificates from a CA in production).
        #[arg(long, value_delimiter = ',')]
        tls_names: Vec<String>,
    },
    /// Create, list, show, rotate and revoke API keys (through the admin API).
    Keys {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Register, list, show and delete OAuth apps (through the admin API).
    Clients {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: oauth::ClientsCommand,
    },
    /// Create, list, disable, enable and update the users of the authorization-code flow.
    Users {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: oauth::UsersCommand,
    },
    /// Show or change the organisation-wide key policy (through the admin API).
    Policy {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: keys::PolicyCommand,
    },
    /// Add, list, change and disable the operators of the workbench (through the admin API).
    Operators {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: workbench::OperatorsCommand,
    },
    /// Create, list and revoke admin tokens for automation (through the admin API).
    Tokens {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: workbench::TokensCommand,
    },
    /// Who the admin credential in use is, and what it may do.
    Whoami {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Create the first owner straight into the store (refused once an owner exists).
    /// The password comes from TOLLGATE_OWNER_PASSWORD, a prompt or stdin.
    Bootstrap(workbench::BootstrapArgs),
    /// Read the audit log: every change, who made it, before and after (through the
    /// admin API).
    Audit {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Owners: the customers keys are issued to, whose rate limit their keys share
    /// (through the admin API).
    Owners {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: owners::OwnersCommand,
    },
    /// Webhook endpoints: add, change, rotate their secret, test, and see deliveries
    /// (through the admin API).
    Webhooks {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Read the event stream, oldest first, from a cursor (through the admin API).
    Events {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        /// Where the last read ended (its "next:" line); from the first event when left out.
        #[arg(long)]
        cursor: Option<String>,
        /// Events to read, 1 to 500 (default 50).
        #[arg(long)]
        limit: Option<u32>,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => match Config::load(&config.config) {
            Ok(mut loaded) => {
                let file = config.config.display();
                // The files the config names: certificates, keys and CAs, GitHub's keys.
                let mut files =
                    crate::tls::inspect::inspect(&loaded, crate::clock::now_ms() / 1000);
                if let Some(path) = &loaded.leak_reports.github_public_keys_path {
                    if let Err(error) = crate::leak_reports::github_keys::GithubKeys::load(path) {
                        files.errors.push(format!("{error:#}"));
                    }
                }
                if !files.errors.is_empty() {
                    eprintln!("{file}: {} error(s)", files.errors.len());
                    for error in &files.errors {
                        eprintln!("{error}");
                    }
                    return ExitCode::FAILURE;
                }
                loaded
                    .warnings
                    .extend(files.warnings.into_iter().map(|(path, message)| {
                        crate::config::ConfigError {
                            path,
                            line: None,
                            message,
                        }
                    }));
                if loaded.warnings.is_empty() {
                    println!("{file}: ok");
                } else {
                    eprintln!("{file}: {} warning(s)", loaded.warnings.len());
                    for warning in &loaded.warnings {
                        eprintln!("warning: {warning}");
                    }
                    println!("{file}: ok, with {} warning(s)", loaded.warnings.len());
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {} error(s)", config.config.display(), errors.0.len());
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, upgrade } => {
            let loaded = match Config::load(&config.config) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    eprintln!("{}: {} error(s)", config.config.display(), errors.0.len());
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            report(server::serve(
                loaded,
                ServeOptions {
                    upgrade,
                    ..ServeOptions::default()
                },
            ))
        }
        Command::Demo(args) => report(demo::run(args)),
        Command::Echo { listen } => report(serve_echo(listen)),
        Command::Keygen { out, tls_names } if !tls_names.is_empty() => {
            report(tls_keygen(&out, &tls_names))
        }
        Command::Keygen { out, .. } => report(keygen(&out)),
        Command::Keys { admin, command } => {
            report_admin(&admin, block_on(keys::keys(&admin, command)))
        }
        Command::Policy { admin, command } => {
            report_admin(&admin, block_on(keys::policy(&admin, command)))
        }
        Command::Clients { admin, command } => {
            report_admin(&admin, block_on(oauth::clients(&admin, command)))
        }
        Command::Users { admin, command } => {
            report_admin(&admin, block_on(oauth::users(&admin, command)))
        }
        Command::Operators { admin, command } => {
            report_admin(&admin, block_on(workbench::operators(&admin, command)))
        }
        Command::Tokens { admin, command } => {
            report_admin(&admin, block_on(workbench::tokens(&admin, command)))
        }
        Command::Whoami { admin } => report_admin(&admin, block_on(workbench::whoami(&admin))),
        Command::Bootstrap(args) => report(block_on(workbench::bootstrap(args))),
        Command::Audit { admin, command } => {
            report_admin(&admin, block_on(audit::audit(&admin, command)))
        }
        Command::Owners { admin, command } => {
            report_admin(&admin, block_on(owners::owners(&admin, command)))
        }
        Command::Webhooks { admin, command } => {
            report_admin(&admin, block_on(webhooks::webhooks(&admin, command)))
        }
        Command::Events {
            admin,
            cursor,
            limit,
        } => report_admin(&admin, block_on(webhooks::events(&admin, cursor, limit))),
    }
}

/// Like [`report`]; with `--json`, an error is JSON on stderr too, as the API said it.
fn report_admin(args: &admin_client::AdminArgs, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Err(error) if args.json => {
            let shown = match error.downcast_ref::<admin_client::ApiError>() {
                Some(api) => api.to_json(),
                None => {
                    serde_json::json!({"error": {"code": "cli_error", "message": format!("{error:#}")}})
                }
            };
            eprintln!("{shown}");
            ExitCode::FAILURE
        }
        other => report(other),
    }
}

/// Runs one admin-API call on a small runtime.
fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_echo(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("echo API on http://{listen}");
        crate::echo::serve(listener, crate::echo::Recorder::default()).await?;
        Ok(())
    })
}

fn tls_keygen(out: &std::path::Path, names: &[String]) -> anyhow::Result<()> {
    let (Some(folder), Some(stem)) = (
        out.parent(),
        out.file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".pem")),
    ) else {
        anyhow::bail!("--out must name a .pem file, such as certs/tls.pem");
    };
    let key = folder.join(format!("{stem}.key"));
    for path in [out, key.as_path()] {
        if path.exists() {
            anyhow::bail!("{} exists; refusing to overwrite it", path.display());
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let files = crate::tls::self_signed::write(&names, folder, stem)?;
    println!(
        "wrote {} and {} (self-signed for {})",
        files.cert_path.display(),
        files.key_path.display(),
        names.join(", ")
    );
    Ok(())
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    if out.exists() {
        anyhow::bail!(
            "{} exists; refusing to overwrite a signing key",
            out.display()
        );
    }
    let keys = crate::auth::signing::SigningKeys::load(&[out.to_path_buf()])?;
    let kid = keys.jwks()["keys"][0]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("wrote {} (kid {kid})", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and argument of every subcommand says what it is for.
    #[test]
    fn every_option_has_a_description() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let name = arg.get_id().as_str();
                if matches!(name, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{name}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "tollgate", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:#?}");
    }
}
