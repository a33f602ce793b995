//! Builds the whole process from a validated config: the data plane on pingora, the admin
//! and metrics listeners, background tasks, signals and draining.

use crate::access_log::AccessLogger;
use crate::admin::key_rules::KeyRules;
use crate::admin::{self, AdminState};
use crate::auth::jwks::IssuerKeys;
use crate::auth::jwt::TokenVerifier;
use crate::auth::signing::SigningKeys;
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::config::Environment;
use crate::config::LimitBackend;
use crate::events::delivery::{Deliverer, WebhookMetrics};
use crate::leak_reports::github_keys::GithubKeys;
use crate::leak_reports::LeakReports;
use crate::lifecycle;
use crate::lifecycle::Readiness;
use crate::listener::{RouterApp, Sockets, Wanted};
use crate::metrics::Metrics;
use crate::oauth::{self, OAuthServer};
use crate::policy::permissions::Catalog;
use crate::policy::rate_limit::local::LocalLimiter;
use crate::policy::rate_limit::redis::RedisLimiter;
use crate::policy::rate_limit::{LimitMetrics, Limiter};
use crate::proxy::app::GatewayApp;
use crate::proxy::edge::Edge;
use crate::proxy::head_guard::{GuardSettings, GuardSettingsRef};
use crate::proxy::head_syntax::HeadLimits;
use crate::proxy::upstreams::Upstreams;
use crate::proxy::Gateway;
use crate::routes::RouteTable;
use crate::store::sync::{SyncMetrics, SyncService, Syncer};
use crate::store::Store;
use crate::tasks::quota_keeper::QuotaKeeper;
use crate::tasks::usage_flush::UsageFlusher;
use crate::tls::client_cert::ClientSubjects;
use crate::tls::metrics::TlsMetrics;
use crate::tls::reload::CertificateReloader;
use crate::tls::{Terminator, TlsSource};
use crate::usage::UsageRecorder;
use anyhow::Context;
use async_trait::async_trait;
use axum::routing::get;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// How `serve` was asked to start.
#[derive(Debug, Default, Clone)]
pub struct ServeOptions {
    /// Take the listening sockets over from the running instance.
    pub upgrade: bool,
    /// A folder removed once the process has drained and written its last batch (the
    /// demo's temporary store).
    pub remove_on_exit: Option<std::path::PathBuf>,
}

/// Runs the gateway until a signal stops it. Returns only after draining.
pub fn serve(config: Config, options: ServeOptions) -> anyhow::Result<()> {
    // Every listener first: a port another process holds stops the start here, before
    // anything is opened, written or announced.
    let sockets = Sockets::bind_all(&wanted_listeners(&config), options.upgrade)?;
    for warning in &config.warnings {
        tracing::warn!(%warning, "configuration");
    }
    apply_test_clock(&config);
    let metrics = Arc::new(Metrics::new());
    // Certificates next: a bad file stops the start, naming it, before anything serves.
    let tls_metrics = Arc::new(TlsMetrics::new(&metrics));
    let client_subjects = config
        .tls
        .as_ref()
        .and_then(|tls| tls.client_ca_path.as_ref())
        .map(|_| Arc::new(ClientSubjects::default()));
    let data_tls = match &config.tls {
        Some(tls) => Some(Arc::new(Terminator::new(
            TlsSource::data_plane(tls),
            tls_metrics.clone(),
            client_subjects.clone(),
        )?)),
        None => None,
    };
    let admin_tls = match &config.admin.tls {
        Some(files) => Some(Arc::new(Terminator::new(
            TlsSource::admin(files),
            tls_metrics.clone(),
            None,
        )?)),
        None => None,
    };
    // Ready once the snapshot and the persisted daily quotas are loaded.
    let readiness = Arc::new(Readiness::new(2));
    let syncer = Arc::new(Syncer::new(
        &config,
        readiness.clone(),
        SyncMetrics::new(&metrics),
    ));
    let usage = Arc::new(UsageRecorder::default());
    let catalog = Catalog::new(&config.permissions);
    let routes = RouteTable::new(&config, &catalog);
    let (upstreams, health_checks) = Upstreams::build(&config.upstreams)?;
    let signing = Arc::new(SigningKeys::load(&config.oauth.signing_key_path)?);
    let external: Vec<Arc<IssuerKeys>> = config
        .oauth
        .external_issuers
        .iter()
        .map(|issuer| Arc::new(IssuerKeys::new(issuer.clone())))
        .collect();
    let verifier = Arc::new(TokenVerifier::new(
        &config.oauth,
        signing.clone(),
        external.clone(),
        catalog.clone(),
    ));
    let oauth = Arc::new(OAuthServer::new(
        &config,
        signing,
        syncer.clone(),
        verifier.clone(),
        &metrics,
    ));
    let limit_metrics = LimitMetrics::new(&metrics);
    let limiter = Arc::new(build_limiter(&config, &limit_metrics));
    let access_log = Arc::new(
        AccessLogger::start(&config.access_log, &metrics)
            .context("access_log: cannot open the destination")?,
    );
    let route_names: Vec<Arc<str>> = routes.iter().map(|route| route.name.clone()).collect();
    let upstream_names: Vec<Arc<str>> = config
        .upstreams
        .keys()
        .map(|name| Arc::from(name.as_str()))
        .collect();
    let resolved =
        crate::metrics::ResolvedMetrics::new(metrics.clone(), &route_names, &upstream_names);
    let analytics = Arc::new(crate::analytics::Analytics::new(route_names.clone()));
    let checkpoint = Arc::new(Checkpoint {
        routes,
        catalog,
        key_prefix: config.key_prefix.clone(),
        environments: config.accepted_environments(),
        default_environment: config.environment,
        snapshot: syncer.snapshot.clone(),
        verifier,
        limiter: limiter.clone(),
        limit_metrics,
        rate_limits: config.rate_limits.clone(),
        policy_headers: Default::default(),
        usage: usage.clone(),
        analytics: analytics.clone(),
        metrics: resolved,
        access_log: access_log.clone(),
    });
    // Leak reports: GitHub's keys are read now, so a bad file stops the start.
    let leak_reports = match &config.leak_reports.github_public_keys_path {
        Some(path) => Some(crate::leak_reports::router(Arc::new(LeakReports {
            keys: GithubKeys::load(path)?,
            action: config.leak_reports.action,
            rules: KeyRules::new(&config),
            syncer: syncer.clone(),
            reports: LeakReports::metric(&metrics),
        }))),
        None => None,
    };
    let gateway = Gateway {
        checkpoint: checkpoint.clone(),
        upstreams,
        trusted_proxies: config.trusted_proxies.clone(),
        leak_reports: leak_reports.is_some(),
        oauth: match leak_reports {
            Some(reports) => oauth::router(oauth).merge(reports),
            None => oauth::router(oauth),
        },
        edge: Edge::new(
            config
                .tls
                .as_ref()
                .and_then(|tls| tls.hsts.as_deref())
                .and_then(|hsts| http::HeaderValue::from_str(hsts).ok()),
            client_subjects,
            &metrics,
        ),
    };
    let token = std::env::var(&config.admin.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    if token.is_none() {
        tracing::info!(
            variable = %config.admin.token_env,
            "the bootstrap token is off (its variable is unset): the admin API takes operator sessions and admin tokens"
        );
    }
    let (admin_requests, signins) = AdminState::metrics(&metrics);
    let admin_state = Arc::new(AdminState {
        syncer: syncer.clone(),
        rules: KeyRules::new(&config),
        token,
        readiness: readiness.clone(),
        grant_lifetime_ms: (config.oauth.refresh_token_ttl + config.oauth.access_token_ttl)
            .as_millis() as i64,
        roles: config.admin.roles.clone(),
        session_ttl: config.admin.session_ttl,
        // A console served over HTTPS marks its session cookie `Secure`.
        secure_cookies: config.admin.tls.is_some(),
        admin_requests,
        signins,
        webhooks: config.webhooks.clone(),
        limiter: Some(limiter.clone()),
    });

    if let Some(folder) = config
        .upgrade_sock
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("upgrade_sock: cannot create {}", folder.display()))?;
    }

    let conf = ServerConf {
        threads: config.threads,
        upgrade_sock: config.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(config.grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let keeper = QuotaKeeper::new(limiter, syncer.clone(), readiness.clone());
    if options.upgrade {
        preload(&config, &syncer, &keeper)?;
    }
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    // HTTP/2 streams go through pingora's server with these limits; the plaintext preface
    // is recognised by the connection loop, which hands such connections over.
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    proxy.server_options = Some(server_options);
    proxy.h2_options = Some(h2_options());
    let proxy = Arc::new(proxy);
    let guard = Arc::new(GuardSettingsRef(GuardSettings {
        limits: HeadLimits::default(),
        metrics: metrics.clone(),
    }));
    let sockets = server.add_service(sockets);
    // No L4 read buffer: pingora's own head buffer already batches reads, and the default
    // 64 KiB per connection would dominate the memory of idle keep-alives.
    let buffers = L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE);
    if !config.listen.is_empty() {
        let app = GatewayApp {
            proxy: proxy.clone(),
            guard: guard.clone(),
            tls: None,
        };
        let mut data_plane = Service::new("tollgate data plane".to_string(), app);
        for addr in &config.listen {
            data_plane.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers));
        }
        server.add_service(data_plane).add_dependency(&sockets);
    }
    if let (Some(tls), Some(terminator)) = (&config.tls, &data_tls) {
        let app = GatewayApp {
            proxy: proxy.clone(),
            guard: guard.clone(),
            tls: Some(terminator.clone()),
        };
        let mut https = Service::new("tollgate data plane (HTTPS)".to_string(), app);
        for addr in &tls.listen {
            https.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers));
        }
        server.add_service(https).add_dependency(&sockets);
    }
    // The console is served beside the admin API, and makes its requests to it.
    let api = admin::router(admin_state);
    let console = Arc::new(crate::console::Console::new(&config, api.clone()));
    let admin_routes = api.merge(crate::console::router(console));
    let admin_service = router_service(
        "admin",
        config.admin.listen,
        admin_routes,
        admin_tls.clone(),
    );
    server.add_service(admin_service).add_dependency(&sockets);
    let metrics_service = router_service(
        "metrics",
        config.metrics.listen,
        metrics_router(metrics.clone()),
        None,
    );
    server.add_service(metrics_service).add_dependency(&sockets);
    if let Some(forward_auth) = &config.forward_auth {
        let state = crate::forward_auth::ForwardAuth {
            checkpoint,
            trusted_proxies: config.trusted_proxies.clone(),
        };
        let router = crate::forward_auth::router(Arc::new(state));
        let service = router_service("forward auth", forward_auth.listen, router, None);
        server.add_service(service).add_dependency(&sockets);
    }
    for health_check in health_checks {
        server.add_service(health_check);
    }
    server.add_service(background_service(
        "snapshot sync",
        SyncService(syncer.clone()),
    ));
    if !external.is_empty() {
        server.add_service(background_service("external JWKS", JwksRefresher(external)));
    }
    server.add_service(background_service("quota keeper", keeper));
    server.add_service(background_service(
        "certificate reload",
        CertificateReloader {
            terminators: data_tls.into_iter().chain(admin_tls).collect(),
            metrics: tls_metrics,
        },
    ));
    server.add_service(background_service(
        "expiry scanner",
        crate::tasks::expiry_scanner::ExpiryScanner {
            syncer: syncer.clone(),
        },
    ));
    server.add_service(background_service(
        "webhook delivery",
        Deliverer::new(
            &config.webhooks,
            syncer.clone(),
            WebhookMetrics::new(&metrics),
        )
        .context("webhooks: cannot build the delivery client")?,
    ));
    server.add_service(background_service(
        "usage flush",
        UsageFlusher::new(usage, analytics, config.analytics.retention, syncer),
    ));

    watch_drain(
        &server,
        config.grace_period,
        access_log,
        options.remove_on_exit,
    );
    let forward_auth = config.forward_auth.as_ref().map(|f| f.listen.to_string());
    tracing::info!(listen = ?config.listen, admin = %config.admin.listen, metrics = %config.metrics.listen, forward_auth = forward_auth.as_deref().unwrap_or("off"), "tollgate serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    Ok(())
}

/// An upgrading process takes the listening sockets only once it can serve: it loads its
/// snapshot and the day's quota counts first, on a connection of its own, while the old
/// process keeps serving. If the store cannot be read, the upgrade stops here (exit 1) and
/// the old process is untouched.
fn preload(config: &Config, syncer: &Syncer, keeper: &QuotaKeeper) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the preload runtime")?;
    runtime
        .block_on(async {
            let store = tokio::time::timeout(syncer.deadline(), Store::open(&config.store.url))
                .await
                .map_err(|_| anyhow::anyhow!("the store did not answer"))?
                .context("cannot open the store")?;
            let loaded = async {
                syncer.load_first(&store).await?;
                keeper.restore_from(&store).await
            }
            .await;
            store.close().await;
            Ok::<_, anyhow::Error>(loaded?)
        })
        .context("cannot load the snapshot before taking the sockets over (the running process keeps them)")
}

/// Every address the process listens on, with the setting each comes from.
fn wanted_listeners(config: &Config) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> = config
        .listen
        .iter()
        .map(|&addr| Wanted {
            setting: "listen",
            addr,
        })
        .collect();
    wanted.push(Wanted {
        setting: "admin.listen",
        addr: config.admin.listen,
    });
    wanted.push(Wanted {
        setting: "metrics.listen",
        addr: config.metrics.listen,
    });
    for addr in config.tls.iter().flat_map(|tls| &tls.listen) {
        wanted.push(Wanted {
            setting: "tls.listen",
            addr: *addr,
        });
    }
    if let Some(forward_auth) = &config.forward_auth {
        wanted.push(Wanted {
            setting: "forward_auth.listen",
            addr: forward_auth.listen,
        });
    }
    wanted
}

/// An axum router on a pingora listening service of its own (one thread), so its socket
/// is handed over on upgrade like the data plane's.
fn router_service(
    name: &str,
    addr: std::net::SocketAddr,
    router: axum::Router,
    tls: Option<Arc<Terminator>>,
) -> Service<RouterApp> {
    let mut service = Service::new(format!("tollgate {name}"), RouterApp::new(router, tls));
    service.threads = Some(1);
    service.add_tcp(&addr.to_string());
    service
}

fn metrics_router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// SIGTERM and SIGINT drain and exit; SIGQUIT hands the sockets to a new process first.
struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::GracefulTerminate,
        }
    }
}

/// Pingora waits out the whole grace period even when nothing is in flight. This watcher
/// exits as soon as the last in-flight request has finished, or when the grace period ends.
fn watch_drain(
    server: &Server,
    grace_period: Duration,
    access_log: Arc<AccessLogger>,
    remove_on_exit: Option<std::path::PathBuf>,
) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod) => {
                let began = Instant::now();
                let deadline = began + grace_period;
                // Keep-alive clients get up to LINGER to send on their open connections and
                // be told to close them; whatever is in flight finishes. An idle process
                // with no client connected stops at once.
                let lingering =
                    || lifecycle::connections() > 0 && began.elapsed() < crate::proxy::app::LINGER;
                while (!lifecycle::drained() || lingering()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                access_log.flush();
                if let Some(folder) = &remove_on_exit {
                    if let Err(error) = std::fs::remove_dir_all(folder) {
                        tracing::warn!(folder = %folder.display(), %error, "cannot remove the folder");
                    }
                }
                tracing::info!("drained; exiting");
                std::process::exit(0);
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    });
}

/// `TOLLGATE_TEST_CLOCK_OFFSET` (milliseconds) shifts the clock of a `test`-environment
/// gateway, so expiry can be tested end to end without waiting. A live gateway ignores it.
fn apply_test_clock(config: &Config) {
    let Ok(offset) = std::env::var("TOLLGATE_TEST_CLOCK_OFFSET") else {
        return;
    };
    // Only a gateway that accepts no live key may shift its clock.
    let live = config.environments.contains(&Environment::LIVE);
    match (live, offset.parse::<i64>()) {
        (false, Ok(offset)) => {
            tracing::warn!(offset_ms = offset, "test clock offset in effect");
            crate::clock::set_offset_ms(offset);
        }
        _ => tracing::warn!(
            "TOLLGATE_TEST_CLOCK_OFFSET ignored: it applies only to a gateway without environment live"
        ),
    }
}

/// Fetches every external issuer's JWKS at start, then every 5 minutes.
struct JwksRefresher(Vec<Arc<IssuerKeys>>);

#[async_trait]
impl pingora::services::background::BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            for issuer in &self.0 {
                issuer.refresh().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn build_limiter(config: &Config, metrics: &LimitMetrics) -> Limiter {
    match &config.rate_limits.backend {
        LimitBackend::Local => Limiter::Local(LocalLimiter::default()),
        LimitBackend::Redis(url) => {
            let active = metrics.fallback_active.clone();
            let on_fallback = Arc::new(move |fallback: bool| active.set(i64::from(fallback)));
            Limiter::Redis(Box::new(RedisLimiter::new(
                url,
                config.rate_limits.replicas,
                on_fallback,
            )))
        }
    }
}

/// HTTP/2 limits (SPEC section 13). pingora's defaults are the base: starting from h2's own
/// would lift the header-list bound to 16 MiB.
/// - 100 concurrent streams a connection;
/// - the HPACK table the client may make us keep: 4 KiB, the protocol's default;
/// - a header section of at most 64 KiB as h2 counts it, beyond which h2 ends the
///   connection with GOAWAY; the 32 KiB and 100-header limits of SPEC 9 are checked on the decoded head in
///   the proxy, with the same error as on HTTP/1.1. The bound also caps how many
///   CONTINUATION frames h2 reads for one header block before closing the connection;
/// - rapid reset (CVE-2023-44487): at most 20 streams reset by the client before the
///   server accepted them, then `GOAWAY`; 1,024 streams a connection may make us reset
///   for errors, then `GOAWAY`.
pub fn h2_options() -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    options
        .max_concurrent_streams(100)
        .header_table_size(4096)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024));
    options
}
