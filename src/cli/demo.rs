//! `tollgate demo`: an echo API, the gateway in front of it on an embedded store in a temp
//! folder, and copy-paste curl lines.

use crate::admin::key_rules::KeyRules;
use crate::clock;
use crate::config::Config;
use crate::echo::{self, Recorder};
use crate::server::{self, ServeOptions};
use crate::store::sync::policy_from_config;
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data-plane address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Metrics address.
    #[arg(long, default_value = "127.0.0.1:9100")]
    metrics_listen: SocketAddr,
    /// Address of the built-in echo API (the upstream).
    #[arg(long, default_value = "127.0.0.1:3000")]
    upstream_listen: SocketAddr,
    /// HTTPS (and HTTP/2) data-plane address, with a certificate made for the demo.
    #[arg(long, default_value = "127.0.0.1:8443")]
    https_listen: SocketAddr,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let folder = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let started = start(&args, &folder);
    // A clean stop removes the folder once the last batch is written; a failed start here.
    if std::fs::metadata(&folder).is_ok() {
        let _ = std::fs::remove_dir_all(&folder);
    }
    started
}

fn start(args: &DemoArgs, folder: &Path) -> anyhow::Result<()> {
    crate::tls::self_signed::write(&["localhost", "127.0.0.1", "::1"], folder, "tls")?;
    let config = Config::parse(&demo_yaml(args, folder))
        .map_err(|errors| anyhow::anyhow!("the built-in demo config is invalid:\n{errors}"))?;
    // Every port first, so a clash is reported before anything is created or printed.
    for (flag, addr) in [
        ("--listen", args.listen),
        ("--admin-listen", args.admin_listen),
        ("--metrics-listen", args.metrics_listen),
        ("--upstream-listen", args.upstream_listen),
        ("--https-listen", args.https_listen),
    ] {
        drop(crate::listener::bind(crate::listener::Wanted {
            setting: flag,
            addr,
        })?);
    }
    // The operator token of this demo only; set before any thread starts.
    let token = format!("demo-{}", crate::auth::base62::random(24));
    std::env::set_var(&config.admin.token_env, &token);
    let made = create_demo_records(&config)?;
    start_echo(args.upstream_listen)?;
    print_tour(args, &made, &token, folder);
    server::serve(
        config,
        ServeOptions {
            remove_on_exit: Some(folder.to_path_buf()),
            ..ServeOptions::default()
        },
    )
}

/// What the demo made for the person trying it.
struct Made {
    key: String,
    client_id: String,
    owner_email: String,
    owner_password: String,
}

/// The demo's email for its owner.
pub const DEMO_OWNER: &str = "demo@tollgate.local";

/// Writes the demo key and the demo owner straight into the fresh store, through the same
/// rules the admin API applies, and returns their secrets.
fn create_demo_records(config: &Config) -> anyhow::Result<Made> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(&config.store.url).await?;
        let policy = policy_from_config(&config.policy);
        store.seed_policy(policy, clock::now_ms()).await?;
        let input = serde_json::from_value(serde_json::json!({
            "name": "demo",
            "permissions": ["accounts:read"],
            "ip_allowlist": ["127.0.0.1"],
            "metadata": {"created_by": "tollgate demo"},
        }))?;
        let change = KeyRules::new(config)
            .create(input, &policy, clock::now_ms())
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        store
            .insert_key(
                &change.record,
                &crate::store::records::Actor::system("demo"),
                clock::now_ms(),
            )
            .await?;
        let key = change
            .minted
            .map(|minted| minted.secret)
            .ok_or_else(|| anyhow::anyhow!("no secret minted"))?;
        let owner_password = crate::auth::base62::random(16);
        let owner = crate::admin::new_operator(
            DEMO_OWNER,
            "Demo Owner",
            "owner",
            &owner_password,
            clock::now_ms(),
        )
        .map_err(|error| anyhow::anyhow!("{error}"))?;
        store
            .insert_operator(
                &owner,
                &crate::store::records::Actor::system("demo"),
                clock::now_ms(),
            )
            .await?;
        Ok(Made {
            key,
            client_id: change.record.client_id.clone(),
            owner_email: owner.email,
            owner_password,
        })
    })
}

fn start_echo(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot start the echo API on {addr} (use --upstream-listen)"))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("demo-echo".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                    let _ = echo::serve(listener, Recorder::default()).await;
                }
            });
        })?;
    Ok(())
}

fn demo_yaml(args: &DemoArgs, folder: &Path) -> String {
    let folder = folder.display();
    format!(
        r#"
listen: {listen}
tls:
  listen: {https}
  certificates: [{{ cert_path: {folder}/tls.pem, key_path: {folder}/tls.key }}]
threads: 1
grace_period: 5s
upgrade_sock: {folder}/upgrade.sock
admin: {{ listen: {admin} }}
metrics: {{ listen: {metrics} }}
store: {{ url: "sqlite://{folder}/tollgate.db" }}
oauth: {{ issuer: "http://{listen}", signing_key_path: {folder}/signing.pem }}
permissions: [accounts:read, accounts:write]
presets:
  read_only: [accounts:read]
upstreams:
  echo: {{ targets: ["{upstream}"] }}
routes:
  - path_prefix: /v1/accounts
    methods: [GET]
    upstream: echo
    require: [accounts:read]
  - path_prefix: /v1/accounts
    methods: [POST]
    upstream: echo
    require: [accounts:write]
  - path_prefix: /v1/public
    upstream: echo
    anonymous: true
    rate_limit: {{ requests: 5, per: 10s }}
"#,
        listen = args.listen,
        admin = args.admin_listen,
        metrics = args.metrics_listen,
        upstream = args.upstream_listen,
        https = args.https_listen,
    )
}

fn print_tour(args: &DemoArgs, made: &Made, token: &str, folder: &Path) {
    let gw = args.listen;
    let https = format!("localhost:{}", args.https_listen.port());
    let folder = folder.display();
    let (key, client_id) = (&made.key, &made.client_id);
    let (owner, password) = (&made.owner_email, &made.owner_password);
    println!(
        r#"
tollgate demo
  gateway   http://{gw}    (echo API behind it on {upstream})
            https://{https}   (HTTP/2 too; certificate {folder}/tls.pem)
  admin     http://{admin}   bootstrap token: {token}
  console   http://{admin}/console/   sign in as {owner}, password {password}
  metrics   http://{metrics}/metrics

A key was created for you: accounts:read only, usable from 127.0.0.1 only.
  KEY={key}

Try:
  # allowed: the echo API shows the identity headers the gateway added
  curl -i http://{gw}/v1/accounts -H "X-API-Key: $KEY"
  # the same key as a bearer token
  curl -i http://{gw}/v1/accounts -H "Authorization: Bearer $KEY"
  # over HTTPS and HTTP/2, trusting the demo's self-signed certificate
  curl -i --http2 --cacert {folder}/tls.pem https://{https}/v1/accounts -H "X-API-Key: $KEY"
  # from an address outside the key's allowlist: 403 ip_not_allowed
  curl -i --interface 127.0.0.2 http://{gw}/v1/accounts -H "X-API-Key: $KEY"
  # a route needing accounts:write: 403 insufficient_permission
  curl -i -X POST http://{gw}/v1/accounts -H "X-API-Key: $KEY"
  # no credential: 401 missing_credentials; no route: 404 route_not_found
  curl -i http://{gw}/v1/accounts
  curl -i http://{gw}/nowhere
  # an anonymous route:
  curl -i http://{gw}/v1/public/hello

Rate limits: /v1/public allows 5 requests per 10 s per caller; the 6th gets 429:
  for i in 1 2 3 4 5 6 7; do curl -s -o /dev/null -w "%{{http_code}} " http://{gw}/v1/public/hello; done; echo
  curl -si http://{gw}/v1/public/hello | grep -i -e ratelimit -e retry-after

The key is also an OAuth client (client credentials):
  TOKEN=$(curl -s -u {client_id}:$KEY -d grant_type=client_credentials http://{gw}/oauth/token \
          | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -i http://{gw}/v1/accounts -H "Authorization: Bearer $TOKEN"

Manage keys with the CLI (in another terminal):
  export TOLLGATE_ADMIN_URL=http://{admin} TOLLGATE_ADMIN_TOKEN={token}
  tollgate keys list
  tollgate keys create --name partner --permission accounts:read --expires-in 30d
  tollgate keys usage <id>

Open the console to see the key, its usage, and to create, rotate and revoke keys:
  http://{admin}/console/   (sign in as {owner}, password {password})

Ctrl-C stops the demo.
"#,
        upstream = args.upstream_listen,
        admin = args.admin_listen,
        metrics = args.metrics_listen,
    );
}
