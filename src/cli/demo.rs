//! `tollgate demo`: an echo API, the gateway in front of it on an embedded store in a temp
//! folder, and copy-paste curl lines.

use crate::config::Config;
use crate::echo::{self, Recorder};
use crate::server::{self, ServeOptions};
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
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let folder = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    start_echo(args.upstream_listen)?;
    let config = Config::parse(&demo_yaml(&args, &folder))
        .map_err(|errors| anyhow::anyhow!("the built-in demo config is invalid:\n{errors}"))?;
    print_tour(&args);
    server::serve(config, ServeOptions::default())
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
"#,
        listen = args.listen,
        admin = args.admin_listen,
        metrics = args.metrics_listen,
        upstream = args.upstream_listen,
    )
}

fn print_tour(args: &DemoArgs) {
    let gw = args.listen;
    println!(
        r#"
tollgate demo
  gateway   http://{gw}    (echo API behind it on {upstream})
  admin     http://{admin}
  metrics   http://{metrics}/metrics

Try:
  # an anonymous route, served:
  curl -i http://{gw}/v1/public/hello
  # a protected route without a credential: 401 missing_credentials
  curl -i http://{gw}/v1/accounts
  # no route: 404 route_not_found
  curl -i http://{gw}/nowhere
  # what the gateway counted:
  curl -s http://{metrics}/metrics | grep tollgate_requests_total

Ctrl-C stops the demo.
"#,
        upstream = args.upstream_listen,
        admin = args.admin_listen,
        metrics = args.metrics_listen,
    );
}
