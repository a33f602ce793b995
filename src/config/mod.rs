//! The validated, frozen configuration: every field typed, every cross-reference checked.

mod duplicates;
mod duration;
mod environment;
mod lines;
mod lint;
mod reader;
mod schema;
mod tls_schema;

pub use duration::{format_duration, parse_duration};
pub use environment::{Environment, Environments};
pub use reader::{canonical_ip, parse_cidr, parse_cidr_exact, CidrError};

use http::Method;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem in the YAML, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Every error found in one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Plaintext data-plane addresses; empty when only `tls.listen` serves (HTTPS only).
    pub listen: Vec<SocketAddr>,
    /// The HTTPS data plane (SPEC section 13), when configured.
    pub tls: Option<TlsConfig>,
    pub threads: usize,
    pub upgrade_sock: PathBuf,
    pub grace_period: Duration,
    pub access_log: AccessLog,
    /// The environment keys are created in when they name none: the first of
    /// `environments`.
    pub environment: Environment,
    /// Every environment whose keys this gateway accepts (`environment: live` is `[live]`).
    pub environments: Vec<Environment>,
    pub key_prefix: String,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    /// The forward-auth listener, when configured.
    pub forward_auth: Option<ForwardAuthConfig>,
    pub store: StoreConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub infrastructure_ips: Vec<IpNet>,
    pub policy: PolicyConfig,
    pub permissions: Vec<String>,
    pub presets: BTreeMap<String, Vec<String>>,
    pub roles: BTreeMap<String, Vec<String>>,
    pub oauth: OAuthConfig,
    pub rate_limits: RateLimitConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Webhook delivery (SPEC section 14).
    pub webhooks: WebhookConfig,
    /// Leaked-key reports from GitHub's secret scanning (SPEC section 14).
    pub leak_reports: LeakReportConfig,
    /// How long request counts are kept (SPEC 15).
    pub analytics: AnalyticsConfig,
    /// What is valid but probably not meant (a route that can never match): `check`
    /// prints them and `serve` logs them.
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Deliver to loopback, private and link-local addresses too (tests, a private network).
    pub allow_private_destinations: bool,
    /// How long an attempt may take, connecting included.
    pub timeout: Duration,
    pub max_attempts: u32,
    /// The wait after the first failure; each next one is four times longer, at most 10 h.
    pub retry_base: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private_destinations: false,
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            retry_base: Duration::from_secs(5),
        }
    }
}

/// What a leaked key reported by a scanner gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakAction {
    Revoke,
    Notify,
}

/// `analytics`: how long the per-hour counts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsConfig {
    pub retention: Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            retention: Duration::from_secs(90 * 86_400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakReportConfig {
    /// GitHub's secret-scanning public keys, saved as GitHub serves them; the endpoint is
    /// off when unset.
    pub github_public_keys_path: Option<PathBuf>,
    pub action: LeakAction,
}

impl Default for LeakReportConfig {
    fn default() -> Self {
        LeakReportConfig {
            github_public_keys_path: None,
            action: LeakAction::Revoke,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    Off,
    File(PathBuf),
}

impl Config {
    /// The environments whose keys this gateway accepts, as a set.
    pub fn accepted_environments(&self) -> Environments {
        Environments::of(&self.environments)
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token_env: String,
    /// How long a console sign-in lasts.
    pub session_ttl: Duration,
    /// Custom operator roles, beside the built-in ones.
    pub roles: BTreeMap<String, crate::admin_access::Permissions>,
    /// The admin API and console over HTTPS, when set.
    pub tls: Option<CertificateFiles>,
}

/// The HTTPS data plane of SPEC section 13.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    /// Chosen by SNI; the first is the default.
    pub certificates: Vec<ServerCertificate>,
    pub min_version: TlsVersion,
    /// ALPN offers `h2` beside `http/1.1`.
    pub http2: bool,
    /// When set, client certificates are requested, and verified when presented.
    pub client_ca_path: Option<PathBuf>,
    /// `Strict-Transport-Security`, sent on every HTTPS response when set.
    pub hsts: Option<String>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    pub files: CertificateFiles,
    /// Exact names or `*.` wildcards; empty means the names the certificate carries.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// Forward authentication for nginx, Caddy, Traefik and Envoy (SPEC section 12).
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded store: a SQLite file, created with its folder on first start.
    Sqlite(PathBuf),
    /// A PostgreSQL server shared by several replicas.
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: StoreUrl,
    pub sync_interval: Duration,
    pub max_staleness: Duration,
    /// The local snapshot file a restart builds from (`None`: `off`). By default beside the
    /// SQLite file, or beside `upgrade_sock` with PostgreSQL.
    pub snapshot_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub block_legacy_keys: bool,
    pub max_key_lifetime: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub issuer: String,
    pub audience: Option<String>,
    /// The first key signs; all are published. Generated on first start when absent.
    pub signing_key_path: Vec<PathBuf>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub auth_code_ttl: Duration,
    pub external_issuers: Vec<ExternalIssuer>,
}

#[derive(Debug, Clone)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitBackend {
    Local,
    Redis(String),
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub backend: LimitBackend,
    pub replicas: u32,
    pub tiers: Tiers,
    pub burst: Window,
}

/// Limits by how the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    pub anonymous: Tier,
    pub api_key: Tier,
    pub oauth: Tier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tier {
    pub per_minute: u64,
    pub per_day: u64,
}

/// A fixed budget of requests per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub requests: u64,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `host:port` of each target, resolved at start.
    pub targets: Vec<String>,
    pub tls: bool,
    /// Verify the upstream against this CA instead of the system roots.
    pub ca_path: Option<PathBuf>,
    /// The name sent and verified; the first target's host when unset.
    pub sni: Option<String>,
    /// HTTP/2 to the upstream, through ALPN.
    pub http2: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The metric label; the path prefix unless `name` is set.
    pub name: String,
    pub path_prefix: String,
    /// `None` matches every method.
    pub methods: Option<Vec<Method>>,
    pub upstream: String,
    pub require: Vec<String>,
    pub anonymous: bool,
    pub rate_limit: Option<Window>,
    /// The credits an allowed request spends from a caller that has credits.
    pub cost: u64,
    /// Only keys of these environments may use the route, when set.
    pub environments: Option<Vec<Environment>>,
    /// Keys of these environments go to another upstream.
    pub upstream_by_environment: Vec<(Environment, String)>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                line: None,
                message: format!("cannot read {}: {error}", path.display()),
            }])
        })?;
        schema::parse(&source, schema::Empty::Refused)
    }

    /// Validates YAML text, reporting every error with its path and line. Text without a
    /// setting is a configuration of defaults (a file without one is refused by `load`).
    pub fn parse(source: &str) -> Result<Self, ConfigErrors> {
        schema::parse(source, schema::Empty::Allowed)
    }
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            anonymous: Tier {
                per_minute: 60,
                per_day: 1_000,
            },
            api_key: Tier {
                per_minute: 300,
                per_day: 10_000,
            },
            oauth: Tier {
                per_minute: 600,
                per_day: 50_000,
            },
        }
    }
}
