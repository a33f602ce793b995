//! The YAML schema of SPEC section 2: which keys exist, their types, defaults and cross-checks.

use super::lines::LineIndex;
use super::reader::{child, Object, Reader};
use super::*;
use serde_yaml_ng::Value;
use std::collections::BTreeSet;

const TOP_KEYS: &[&str] = &[
    "listen",
    "tls",
    "threads",
    "upgrade_sock",
    "grace_period",
    "access_log",
    "environment",
    "environments",
    "key_prefix",
    "admin",
    "metrics",
    "forward_auth",
    "store",
    "trusted_proxies",
    "infrastructure_ips",
    "policy",
    "permissions",
    "presets",
    "roles",
    "oauth",
    "rate_limits",
    "upstreams",
    "routes",
    "webhooks",
    "leak_reports",
    "analytics",
];

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// Whether a document without a single setting is a configuration (of defaults only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    Allowed,
    Refused,
}

pub fn parse(source: &str, empty: Empty) -> Result<Config, ConfigErrors> {
    // A duplicate key stops the YAML parser; a second reading reports every duplicate
    // where it is and keeps the first value, so every other error is reported too.
    let (value, mut errors) = match serde_yaml_ng::from_str::<Value>(source) {
        Ok(value) => (value, Vec::new()),
        Err(error) => match super::duplicates::read(source) {
            Some(read) => read,
            None => {
                return Err(ConfigErrors(vec![ConfigError {
                    path: String::new(),
                    line: error.location().map(|location| location.line()),
                    message: format!("invalid YAML: {error}"),
                }]))
            }
        },
    };
    let value = if value.is_null() {
        if empty == Empty::Refused {
            return Err(ConfigErrors(vec![ConfigError {
                path: String::new(),
                line: None,
                message:
                    "the file has no settings: a gateway needs at least an upstream and a route"
                        .into(),
            }]));
        }
        Value::Mapping(Default::default())
    } else {
        value
    };
    let lines = LineIndex::build(source);
    let mut r = Reader::new(&lines);
    let config = read_config(&mut r, &value);
    errors.append(&mut r.errors);
    match config {
        Some(mut config) if errors.is_empty() => {
            config.warnings = super::lint::warnings(&config, &lines);
            Ok(config)
        }
        _ => {
            errors.sort_by_key(|error| error.line.unwrap_or(0));
            Err(ConfigErrors(errors))
        }
    }
}

fn read_config(r: &mut Reader<'_>, value: &Value) -> Option<Config> {
    let top = r.object(value, "", TOP_KEYS)?;
    let tls = super::tls_schema::read_tls(r, &top);
    // With HTTPS configured and no `listen`, nothing is served in plaintext.
    let default_listen: Vec<SocketAddr> = match &tls {
        Some(_) => Vec::new(),
        None => vec![([0, 0, 0, 0], 8080).into()],
    };
    let listen = r.field(
        &top,
        "listen",
        default_listen,
        |r, value, path| match value {
            Value::Sequence(_) => r.list(value, path, Reader::socket_addr).filter(|list| {
                if list.is_empty() {
                    r.error(path, "needs at least one address");
                }
                !list.is_empty()
            }),
            _ => r.socket_addr(value, path).map(|addr| vec![addr]),
        },
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = r.field(&top, "threads", cpus, |r, value, path| {
        r.positive(value, path).map(|n| n as usize)
    });
    let upgrade_sock = r.field(
        &top,
        "upgrade_sock",
        "data/tollgate-upgrade.sock".into(),
        |r, v, p| r.string(v, p).map(PathBuf::from),
    );
    let grace_period = r.field(
        &top,
        "grace_period",
        Duration::from_secs(30),
        Reader::duration,
    );
    let access_log = r.field(&top, "access_log", AccessLog::Stdout, |r, value, path| {
        Some(match r.string(value, path)?.as_str() {
            "stdout" => AccessLog::Stdout,
            "off" => AccessLog::Off,
            "" => {
                r.error(path, "expected stdout, off or a file path");
                return None;
            }
            file => AccessLog::File(file.into()),
        })
    });
    let environments = read_environments(r, &top);
    let environment = environments[0];
    let key_prefix = r.field(&top, "key_prefix", "tg".to_string(), |r, value, path| {
        let prefix = r.string(value, path)?;
        let valid = (1..=16).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            r.error(path, "must be 1 to 16 lowercase letters or digits");
            return None;
        }
        Some(prefix)
    });
    let admin = read_admin(r, &top);
    let metrics = read_metrics(r, &top);
    let forward_auth = read_forward_auth(r, &top);
    let store = read_store(r, &top, &upgrade_sock);
    let trusted_proxies = r.field(&top, "trusted_proxies", Vec::new(), |r, v, p| {
        r.list(v, p, Reader::cidr)
    });
    let infrastructure_ips = r.field(&top, "infrastructure_ips", Vec::new(), |r, v, p| {
        r.list(v, p, Reader::cidr)
    });
    let policy = read_policy(r, &top);
    let permissions = read_permissions(r, &top);
    // Cross-references accept every name declared, even one reported as invalid above.
    let known: BTreeSet<&str> = top
        .get("permissions")
        .and_then(|(value, _)| value.as_sequence())
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let presets = read_permission_sets(r, &top, "presets", &known);
    let roles = read_permission_sets(r, &top, "roles", &known);
    let oauth = read_oauth(r, &top);
    let rate_limits = read_rate_limits(r, &top);
    let upstreams = read_upstreams(r, &top);
    // Routes are checked against every upstream named, even one with errors of its own,
    // so a broken upstream is reported once rather than again at each route using it.
    let declared_upstreams: BTreeSet<String> = top
        .get("upstreams")
        .and_then(|(value, _)| value.as_mapping())
        .map(|map| {
            map.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let routes = read_routes(r, &top, &known, &declared_upstreams, &environments);
    let webhooks = read_webhooks(r, &top);
    let leak_reports = read_leak_reports(r, &top);
    let mut analytics = AnalyticsConfig::default();
    if let Some(object) = section(r, &top, "analytics", &["retention"]) {
        analytics.retention = r.field(&object, "retention", analytics.retention, |r, v, p| {
            let retention = r.duration(v, p)?;
            if retention < Duration::from_secs(3600) {
                r.error(p, "must be at least 1h");
                return None;
            }
            Some(retention)
        });
    }

    let mut others = vec![
        ("admin.listen", admin.listen),
        ("metrics.listen", metrics.listen),
    ];
    if let Some(forward_auth) = &forward_auth {
        if [admin.listen, metrics.listen].contains(&forward_auth.listen) {
            r.error(
                "forward_auth.listen",
                "must differ from admin.listen and metrics.listen",
            );
        }
        others.push(("forward_auth.listen", forward_auth.listen));
    }
    let tls_listen = tls.as_ref().map_or(&[][..], |tls| &tls.listen[..]);
    for (name, addr) in others {
        if listen
            .iter()
            .chain(tls_listen)
            .any(|data| data.port() == addr.port() && overlaps(data, &addr))
        {
            r.error(name, format!("{addr} must not share the data-plane port"));
        }
    }
    for addr in tls_listen {
        if listen
            .iter()
            .any(|data| data.port() == addr.port() && overlaps(data, addr))
        {
            r.error(
                "tls.listen",
                format!("{addr} must not share the port of listen"),
            );
        }
    }
    if admin.listen == metrics.listen {
        r.error("metrics.listen", "must differ from admin.listen");
    }

    Some(Config {
        listen,
        tls,
        threads,
        upgrade_sock,
        grace_period,
        access_log,
        environment,
        environments,
        key_prefix,
        admin,
        metrics,
        forward_auth,
        store,
        trusted_proxies,
        infrastructure_ips,
        policy,
        permissions,
        presets,
        roles,
        oauth,
        rate_limits,
        upstreams,
        routes,
        webhooks,
        leak_reports,
        analytics,
        warnings: Vec::new(),
    })
}

/// One environment name: a lowercase word of 2 to 12 letters, and not the word admin
/// tokens carry where keys carry their environment.
fn environment_name(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<Environment> {
    let text = r.string(value, path)?;
    if text == crate::auth::api_key::ADMIN_TOKEN_KIND {
        r.error(
            path,
            format!("\"{text}\" is what admin tokens carry; choose another name"),
        );
        return None;
    }
    match Environment::parse(&text) {
        Some(environment) if environment != Environment::UNKNOWN => Some(environment),
        Some(_) => {
            r.error(path, "too many environment names");
            None
        }
        None => {
            r.error(
                path,
                format!(
                    "\"{text}\" must be a lowercase word of 2 to 12 letters, e.g. live or test"
                ),
            );
            None
        }
    }
}

/// `environment: live` (one) or `environments: [live, test]` (several, the first the
/// default); `[live]` when neither is set.
fn read_environments(r: &mut Reader<'_>, top: &Object<'_>) -> Vec<Environment> {
    let one = r.field(top, "environment", None, |r, value, path| {
        environment_name(r, value, path).map(Some)
    });
    let several = r.field(top, "environments", None, |r, value, path| {
        let names = r.list(value, path, environment_name)?;
        let mut seen = Vec::new();
        for (index, name) in names.iter().enumerate() {
            if seen.contains(name) {
                r.error(
                    &format!("{path}[{index}]"),
                    format!("{name} is listed twice"),
                );
            }
            seen.push(*name);
        }
        if seen.is_empty() {
            r.error(path, "list at least one environment");
            return None;
        }
        Some(Some(seen))
    });
    match (one, several) {
        (Some(_), Some(list)) => {
            r.error(
                &child(top.path(), "environments"),
                "set environment (one) or environments (several), not both",
            );
            list
        }
        (Some(one), None) => vec![one],
        (None, Some(list)) => list,
        (None, None) => vec![Environment::LIVE],
    }
}

fn read_webhooks(r: &mut Reader<'_>, top: &Object<'_>) -> WebhookConfig {
    let mut webhooks = WebhookConfig::default();
    const KEYS: &[&str] = &[
        "allow_private_destinations",
        "timeout",
        "max_attempts",
        "retry_base",
    ];
    if let Some(object) = section(r, top, "webhooks", KEYS) {
        webhooks.allow_private_destinations =
            r.field(&object, "allow_private_destinations", false, Reader::bool);
        webhooks.timeout = r.field(&object, "timeout", webhooks.timeout, Reader::duration);
        webhooks.retry_base = r.field(&object, "retry_base", webhooks.retry_base, Reader::duration);
        webhooks.max_attempts = r.field(&object, "max_attempts", 12, |r, value, path| {
            let attempts = r.positive(value, path)?;
            if attempts > 100 {
                r.error(path, "must be 1 to 100");
                return None;
            }
            Some(attempts as u32)
        });
    }
    webhooks
}

fn read_leak_reports(r: &mut Reader<'_>, top: &Object<'_>) -> LeakReportConfig {
    let mut reports = LeakReportConfig::default();
    if let Some(object) = section(
        r,
        top,
        "leak_reports",
        &["github_public_keys_path", "action"],
    ) {
        reports.github_public_keys_path = r.field(
            &object,
            "github_public_keys_path",
            None,
            |r, value, path| match value {
                Value::Null => Some(None),
                _ => r.string(value, path).map(|p| Some(PathBuf::from(p))),
            },
        );
        reports.action = r.field(
            &object,
            "action",
            LeakAction::Revoke,
            |r, value, path| match r.string(value, path)?.as_str() {
                "revoke" => Some(LeakAction::Revoke),
                "notify" => Some(LeakAction::Notify),
                other => {
                    r.error(
                        path,
                        format!("expected revoke or notify, found \"{other}\""),
                    );
                    None
                }
            },
        );
    }
    reports
}

/// Two listen addresses on the same port clash if either is a wildcard or they are equal.
fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.ip().is_unspecified() || b.ip().is_unspecified() || a.ip() == b.ip()
}

fn section<'v>(
    r: &mut Reader<'_>,
    top: &Object<'v>,
    key: &str,
    known: &[&str],
) -> Option<Object<'v>> {
    let (value, path) = top.get(key)?;
    r.object(value, &path, known)
}

fn read_admin(r: &mut Reader<'_>, top: &Object<'_>) -> AdminConfig {
    let mut admin = AdminConfig {
        listen: ([127, 0, 0, 1], 9090).into(),
        token_env: "TOLLGATE_ADMIN_TOKEN".into(),
        session_ttl: Duration::from_secs(12 * 3600),
        roles: BTreeMap::new(),
        tls: None,
    };
    const KEYS: &[&str] = &["listen", "token_env", "session_ttl", "roles", "tls"];
    if let Some(object) = section(r, top, "admin", KEYS) {
        admin.tls = r.field(&object, "tls", None, |r, value, path| {
            super::tls_schema::certificate_files(r, value, path, &[]).map(Some)
        });
        admin.listen = r.field(&object, "listen", admin.listen, Reader::socket_addr);
        admin.token_env = r.field(&object, "token_env", admin.token_env, env_name);
        admin.session_ttl = r.field(&object, "session_ttl", admin.session_ttl, Reader::duration);
        let roles = r.field(&object, "roles", Vec::new(), |r, value, path| {
            r.named(value, path, |r, name, value, path| {
                if crate::admin_access::built_in_role(name).is_some() {
                    r.error(
                        path,
                        format!("\"{name}\" is a built-in role; choose another name"),
                    );
                    return None;
                }
                if !is_permission_name(name) {
                    r.error(
                        path,
                        format!("\"{name}\" is not a role name (letters, digits and :._-)"),
                    );
                    return None;
                }
                let names = r.list(value, path, |r, value, path| {
                    let name = r.string(value, path)?;
                    let permission = crate::admin_access::Permission::parse(&name);
                    if permission.is_none() {
                        let known = crate::admin_access::Permissions::all().names().join(", ");
                        r.error(
                            path,
                            format!(
                                "unknown admin permission \"{name}\" (the permissions are {known})"
                            ),
                        );
                    }
                    permission
                })?;
                Some(
                    names
                        .into_iter()
                        .collect::<crate::admin_access::Permissions>(),
                )
            })
        });
        admin.roles = roles.into_iter().collect();
    }
    admin
}

fn env_name(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<String> {
    let name = r.string(value, path)?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        r.error(
            path,
            format!("\"{name}\" is not an environment variable name"),
        );
        return None;
    }
    Some(name)
}

/// `forward_auth` is off unless the section is present (SPEC section 12).
fn read_forward_auth(r: &mut Reader<'_>, top: &Object<'_>) -> Option<ForwardAuthConfig> {
    let object = section(r, top, "forward_auth", &["listen"])?;
    if object.get("listen").is_none() {
        r.error(
            "forward_auth.listen",
            "is required when forward_auth is set",
        );
        return None;
    }
    let unset: std::net::SocketAddr = ([127, 0, 0, 1], 8081).into();
    let listen = r.field(&object, "listen", unset, Reader::socket_addr);
    Some(ForwardAuthConfig { listen })
}

fn read_metrics(r: &mut Reader<'_>, top: &Object<'_>) -> MetricsConfig {
    let mut metrics = MetricsConfig {
        listen: ([127, 0, 0, 1], 9100).into(),
    };
    if let Some(object) = section(r, top, "metrics", &["listen"]) {
        metrics.listen = r.field(&object, "listen", metrics.listen, Reader::socket_addr);
    }
    metrics
}

fn read_store(r: &mut Reader<'_>, top: &Object<'_>, upgrade_sock: &std::path::Path) -> StoreConfig {
    let mut store = StoreConfig {
        url: StoreUrl::Sqlite("data/tollgate.db".into()),
        sync_interval: Duration::from_secs(1),
        max_staleness: Duration::from_secs(300),
        snapshot_file: None,
    };
    const KEYS: &[&str] = &[
        "url",
        "url_env",
        "sync_interval",
        "max_staleness",
        "snapshot_file",
    ];
    let mut snapshot_file = SnapshotFile::Default;
    if let Some(object) = section(r, top, "store", KEYS) {
        let parse =
            |url: &str| parse_store_url(url).ok_or("expected sqlite://PATH or postgres://...");
        store.url = value_or_env(r, &object, "url", parse).unwrap_or(store.url);
        snapshot_file = r.field(
            &object,
            "snapshot_file",
            snapshot_file,
            |r, value, path| match r.string(value, path)?.as_str() {
                "off" => Some(SnapshotFile::Off),
                "" => {
                    r.error(path, "expected off or a file path");
                    None
                }
                file => Some(SnapshotFile::At(file.into())),
            },
        );
        store.sync_interval = r.field(
            &object,
            "sync_interval",
            store.sync_interval,
            Reader::duration,
        );
        store.max_staleness = r.field(
            &object,
            "max_staleness",
            store.max_staleness,
            Reader::duration,
        );
        if store.max_staleness < store.sync_interval {
            r.error(
                &child(object.path(), "max_staleness"),
                "must be at least sync_interval",
            );
        }
    }
    store.snapshot_file = match snapshot_file {
        SnapshotFile::Off => None,
        SnapshotFile::At(path) => Some(path),
        SnapshotFile::Default => Some(match &store.url {
            StoreUrl::Sqlite(db) => {
                let mut name = db.as_os_str().to_os_string();
                name.push(".snapshot");
                PathBuf::from(name)
            }
            StoreUrl::Postgres(_) => upgrade_sock.with_file_name("tollgate.snapshot"),
        }),
    };
    store
}

/// `store.snapshot_file` as written.
enum SnapshotFile {
    Default,
    Off,
    At(PathBuf),
}

/// `sqlite://data/x.db` (relative), `sqlite:///var/lib/x.db` (absolute), `postgres://...`.
pub fn parse_store_url(url: &str) -> Option<StoreUrl> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        return (!path.is_empty()).then(|| StoreUrl::Sqlite(path.into()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Some(StoreUrl::Postgres(url.to_string()));
    }
    None
}

fn read_policy(r: &mut Reader<'_>, top: &Object<'_>) -> PolicyConfig {
    let mut policy = PolicyConfig {
        block_legacy_keys: false,
        max_key_lifetime: None,
    };
    if let Some(object) = section(r, top, "policy", &["block_legacy_keys", "max_key_lifetime"]) {
        policy.block_legacy_keys = r.field(&object, "block_legacy_keys", false, Reader::bool);
        policy.max_key_lifetime = r.field(&object, "max_key_lifetime", None, |r, v, p| {
            r.duration(v, p).map(Some)
        });
    }
    policy
}

fn read_permissions(r: &mut Reader<'_>, top: &Object<'_>) -> Vec<String> {
    let list = r.field(top, "permissions", Vec::new(), |r, value, path| {
        r.list(value, path, |r, value, path| {
            let name = r.string(value, path)?;
            if !is_permission_name(&name) {
                r.error(
                    path,
                    format!("\"{name}\" is not a permission name (letters, digits and :._-)"),
                );
                return None;
            }
            Some((name, path.to_string()))
        })
    });
    let mut seen = BTreeSet::new();
    let mut permissions = Vec::with_capacity(list.len());
    for (name, path) in list {
        if seen.insert(name.clone()) {
            permissions.push(name);
        } else {
            r.error(&path, format!("permission \"{name}\" is listed twice"));
        }
    }
    permissions
}

pub fn is_permission_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
}

/// `presets` and `roles`: names mapped to lists of known permissions.
fn read_permission_sets(
    r: &mut Reader<'_>,
    top: &Object<'_>,
    key: &str,
    known: &BTreeSet<&str>,
) -> BTreeMap<String, Vec<String>> {
    let sets = r.field(top, key, Vec::new(), |r, value, path| {
        r.named(value, path, |r, _name, value, path| {
            r.list(value, path, |r, value, path| {
                known_permission(r, value, path, known)
            })
        })
    });
    sets.into_iter().collect()
}

fn known_permission(
    r: &mut Reader<'_>,
    value: &Value,
    path: &str,
    known: &BTreeSet<&str>,
) -> Option<String> {
    let name = r.string(value, path)?;
    if !known.contains(name.as_str()) {
        r.error(path, format!("unknown permission \"{name}\""));
        return None;
    }
    Some(name)
}

fn read_oauth(r: &mut Reader<'_>, top: &Object<'_>) -> OAuthConfig {
    let mut oauth = OAuthConfig {
        issuer: "http://127.0.0.1:8080".into(),
        audience: None,
        signing_key_path: vec!["data/signing.pem".into()],
        access_token_ttl: Duration::from_secs(3600),
        refresh_token_ttl: Duration::from_secs(30 * 86_400),
        auth_code_ttl: Duration::from_secs(600),
        external_issuers: Vec::new(),
    };
    const KEYS: &[&str] = &[
        "issuer",
        "audience",
        "signing_key_path",
        "access_token_ttl",
        "refresh_token_ttl",
        "auth_code_ttl",
        "external_issuers",
    ];
    let Some(object) = section(r, top, "oauth", KEYS) else {
        return oauth;
    };
    oauth.issuer = r.field(&object, "issuer", oauth.issuer, http_url);
    oauth.audience = r.field(&object, "audience", None, |r, v, p| {
        r.string(v, p).map(Some)
    });
    // One path, or a list: the first key signs, every key is published in the JWKS.
    oauth.signing_key_path = r.field(
        &object,
        "signing_key_path",
        oauth.signing_key_path,
        |r, value, path| match value {
            Value::Sequence(items) if items.is_empty() => {
                r.error(path, "needs at least one key file");
                None
            }
            Value::Sequence(_) => r.list(value, path, |r, v, p| r.string(v, p).map(PathBuf::from)),
            _ => r.string(value, path).map(|p| vec![PathBuf::from(p)]),
        },
    );
    oauth.access_token_ttl = r.field(
        &object,
        "access_token_ttl",
        oauth.access_token_ttl,
        Reader::duration,
    );
    oauth.refresh_token_ttl = r.field(
        &object,
        "refresh_token_ttl",
        oauth.refresh_token_ttl,
        Reader::duration,
    );
    oauth.auth_code_ttl = r.field(
        &object,
        "auth_code_ttl",
        oauth.auth_code_ttl,
        Reader::duration,
    );
    oauth.external_issuers = r.field(&object, "external_issuers", Vec::new(), |r, value, path| {
        r.list(value, path, |r, value, path| {
            let issuer = r.object(value, path, &["issuer", "jwks_url", "audience"])?;
            Some(ExternalIssuer {
                issuer: r.required(&issuer, "issuer", Reader::string)?,
                jwks_url: r.required(&issuer, "jwks_url", http_url)?,
                audience: r.required(&issuer, "audience", Reader::string)?,
            })
        })
    });
    oauth
}

fn http_url(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<String> {
    let url = r.string(value, path)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Some(url)
        }
        _ => {
            r.error(path, format!("\"{url}\" is not an http:// or https:// URL"));
            None
        }
    }
}

fn read_rate_limits(r: &mut Reader<'_>, top: &Object<'_>) -> RateLimitConfig {
    let mut limits = RateLimitConfig {
        backend: LimitBackend::Local,
        replicas: 1,
        tiers: Tiers::default(),
        burst: Window {
            requests: 100,
            per: Duration::from_secs(10),
        },
    };
    let Some(object) = section(
        r,
        top,
        "rate_limits",
        &["backend", "backend_env", "replicas", "tiers", "burst"],
    ) else {
        return limits;
    };
    let parse = |backend: &str| {
        if backend == "local" {
            Ok(LimitBackend::Local)
        } else if backend.starts_with("redis://")
            || backend.starts_with("rediss://")
            || crate::policy::rate_limit::redis::cluster_nodes(backend).is_some()
        {
            Ok(LimitBackend::Redis(backend.to_string()))
        } else {
            Err("expected local, redis://host:port or redis+cluster://host1:port,host2:port")
        }
    };
    limits.backend = value_or_env(r, &object, "backend", parse).unwrap_or(LimitBackend::Local);
    limits.replicas = r.field(&object, "replicas", 1, |r, value, path| {
        let n = r.positive(value, path)?;
        u32::try_from(n).ok()
    });
    if let Some(tiers) = section(r, &object, "tiers", &["anonymous", "api_key", "oauth"]) {
        let defaults = limits.tiers;
        limits.tiers.anonymous = r.field(&tiers, "anonymous", defaults.anonymous, tier);
        limits.tiers.api_key = r.field(&tiers, "api_key", defaults.api_key, tier);
        limits.tiers.oauth = r.field(&tiers, "oauth", defaults.oauth, tier);
    }
    limits.burst = r.field(&object, "burst", limits.burst, window);
    limits
}

fn tier(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<Tier> {
    let object = r.object(value, path, &["per_minute", "per_day"])?;
    Some(Tier {
        per_minute: r.required(&object, "per_minute", Reader::positive)?,
        per_day: r.required(&object, "per_day", Reader::positive)?,
    })
}

fn window(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<Window> {
    let object = r.object(value, path, &["requests", "per"])?;
    let requests = r.required(&object, "requests", Reader::positive);
    let per = r.required(&object, "per", Reader::duration);
    Some(Window {
        requests: requests?,
        per: per?,
    })
}

fn read_upstreams(r: &mut Reader<'_>, top: &Object<'_>) -> BTreeMap<String, UpstreamConfig> {
    let upstreams = r.field(top, "upstreams", Vec::new(), |r, value, path| {
        r.named(value, path, |r, _name, value, path| {
            let object = r.object(
                value,
                path,
                &[
                    "targets",
                    "tls",
                    "ca_path",
                    "sni",
                    "http2",
                    "connect_timeout",
                    "read_timeout",
                ],
            )?;
            let targets = r.required(&object, "targets", |r, value, path| {
                if value.as_sequence().is_some_and(|items| items.is_empty()) {
                    r.error(path, "needs at least one target");
                    return None;
                }
                r.list(value, path, target)
            });
            let tls = r.field(&object, "tls", false, Reader::bool);
            let ca_path = r.field(&object, "ca_path", None, |r, v, p| {
                r.string(v, p).map(|path| Some(PathBuf::from(path)))
            });
            let sni = r.field(&object, "sni", None, |r, v, p| {
                super::tls_schema::server_name(r, v, p).map(Some)
            });
            let http2 = r.field(&object, "http2", false, Reader::bool);
            if !tls {
                for (key, set) in [("ca_path", ca_path.is_some()), ("sni", sni.is_some())] {
                    if set {
                        r.error(&child(path, key), "needs tls: true");
                    }
                }
            }
            let connect_timeout = r.field(
                &object,
                "connect_timeout",
                Duration::from_secs(2),
                Reader::duration,
            );
            let read_timeout = r.field(
                &object,
                "read_timeout",
                Duration::from_secs(30),
                Reader::duration,
            );
            Some(UpstreamConfig {
                targets: targets?,
                tls,
                ca_path,
                sni,
                http2,
                connect_timeout,
                read_timeout,
            })
        })
    });
    upstreams.into_iter().collect()
}

/// `host:port`, where host is a name, an IPv4 address or a bracketed IPv6 address.
fn target(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<String> {
    let text = r.string(value, path)?;
    let valid = match text.rsplit_once(':') {
        Some((host, port)) => {
            let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
            {
                v6.parse::<std::net::Ipv6Addr>().is_ok()
            } else {
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            };
            host_ok && port.parse::<u16>().is_ok_and(|port| port > 0)
        }
        None => false,
    };
    if !valid {
        r.error(
            path,
            format!("\"{text}\" is not a target like 127.0.0.1:3000 or api.internal:443"),
        );
        return None;
    }
    Some(text)
}

fn read_routes(
    r: &mut Reader<'_>,
    top: &Object<'_>,
    known: &BTreeSet<&str>,
    upstreams: &BTreeSet<String>,
    environments: &[Environment],
) -> Vec<RouteConfig> {
    const KEYS: &[&str] = &[
        "name",
        "path_prefix",
        "methods",
        "upstream",
        "require",
        "anonymous",
        "rate_limit",
        "cost",
        "environments",
        "upstream_by_environment",
    ];
    // Route windows are counted by name, so two routes with windows need two names.
    let mut window_names: BTreeMap<String, String> = BTreeMap::new();
    r.field(top, "routes", Vec::new(), |r, value, path| {
        r.list(value, path, |r, value, path| {
            let object = r.object(value, path, KEYS)?;
            let path_prefix = r.required(&object, "path_prefix", |r, value, path| {
                let prefix = r.string(value, path)?;
                if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ']) {
                    r.error(path, format!("\"{prefix}\" must be a path starting with /"));
                    return None;
                }
                Some(prefix)
            });
            let name = r.field(&object, "name", None, |r, value, path| {
                let name = r.string(value, path)?;
                // A metric label and a rate-limit window's name in response headers.
                let valid = (1..=64).contains(&name.len())
                    && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
                if !valid {
                    r.error(path, "must be 1 to 64 printable ASCII characters");
                    return None;
                }
                Some(Some(name))
            });
            let methods = r.field(&object, "methods", None, |r, value, path| {
                r.list(value, path, |r, value, path| {
                    let method = r.string(value, path)?;
                    if !METHODS.contains(&method.as_str()) {
                        r.error(
                            path,
                            format!("unknown method \"{method}\" (use {})", METHODS.join(", ")),
                        );
                        return None;
                    }
                    Method::from_bytes(method.as_bytes()).ok()
                })
                .map(Some)
            });
            let upstream = r.required(&object, "upstream", |r, value, path| {
                let name = r.string(value, path)?;
                if !upstreams.contains(&name) {
                    r.error(path, format!("unknown upstream \"{name}\""));
                    return None;
                }
                Some(name)
            });
            let require = r.field(&object, "require", Vec::new(), |r, value, path| {
                r.list(value, path, |r, value, path| {
                    known_permission(r, value, path, known)
                })
            });
            let anonymous = r.field(&object, "anonymous", false, Reader::bool);
            let rate_limit = r.field(&object, "rate_limit", None, |r, v, p| {
                window(r, v, p).map(Some)
            });
            // The credits an allowed request spends (SPEC 15).
            let cost = r.field(&object, "cost", 1, Reader::positive);
            let route_environments = r.field(&object, "environments", None, |r, value, path| {
                let names = r.list(value, path, |r, value, path| {
                    let name = environment_name(r, value, path)?;
                    if !environments.contains(&name) {
                        r.error(path, format!("{name} is not one of this gateway's environments"));
                    }
                    Some(name)
                })?;
                Some(Some(names))
            });
            let upstream_by_environment =
                r.field(&object, "upstream_by_environment", Vec::new(), |r, value, path| {
                    let pairs = r.named(value, path, |r, name, value, path| {
                        let Some(environment) = Environment::parse(name)
                            .filter(|environment| environments.contains(environment))
                        else {
                            r.error(path, format!("{name} is not one of this gateway's environments"));
                            return None;
                        };
                        let upstream = r.string(value, path)?;
                        if !upstreams.contains(&upstream) {
                            r.error(path, format!("unknown upstream \"{upstream}\""));
                            return None;
                        }
                        Some((environment, upstream))
                    })?;
                    Some(pairs.into_iter().map(|(_, pair)| pair).collect())
                });
            if anonymous && !require.is_empty() {
                r.error(
                    &child(object.path(), "require"),
                    "an anonymous route cannot require permissions",
                );
            }
            let path_prefix = path_prefix?;
            let name = name.unwrap_or_else(|| path_prefix.clone());
            if rate_limit.is_some() {
                if let Some(first) = window_names.get(&name) {
                    r.error(
                        &child(object.path(), "rate_limit"),
                        format!(
                            "{first} also has a rate_limit under the name \"{name}\"; route windows \
                             are counted by name, so give one of them a name of its own"
                        ),
                    );
                } else {
                    window_names.insert(name.clone(), object.path().to_string());
                }
            }
            Some(RouteConfig {
                name,
                path_prefix,
                methods,
                upstream: upstream?,
                require,
                anonymous,
                rate_limit,
                cost,
                environments: route_environments,
                upstream_by_environment,
            })
        })
    })
}

/// A value that may hold a secret (a URL with a password): given in the file as `key`, or
/// read from the environment variable named by `{key}_env`. Values read from the
/// environment never appear in an error message.
fn value_or_env<T>(
    r: &mut Reader<'_>,
    object: &Object<'_>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> Option<T> {
    let env_key = format!("{key}_env");
    match (object.get(key), object.get(&env_key)) {
        (Some(_), Some((_, path))) => {
            r.error(&path, format!("set either {key} or {env_key}, not both"));
            None
        }
        (Some((value, path)), None) => {
            let text = r.string(value, &path)?;
            match parse(&text) {
                Ok(parsed) => Some(parsed),
                Err(message) => {
                    // The value is not echoed: a URL may carry a password.
                    r.error(&path, message);
                    None
                }
            }
        }
        (None, Some((value, path))) => {
            let name = env_name(r, value, &path)?;
            let Ok(text) = std::env::var(&name) else {
                r.error(&path, format!("the environment variable {name} is not set"));
                return None;
            };
            match parse(&text) {
                Ok(parsed) => Some(parsed),
                Err(message) => {
                    r.error(&path, format!("the value of {name}: {message}"));
                    None
                }
            }
        }
        (None, None) => None,
    }
}
