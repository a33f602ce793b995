//! Every shipped config loads; bad configs report every error with its path and line.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use tollgate::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

#[test]
fn every_file_in_config_loads_and_checks() {
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            let out = Command::new(BIN)
                .arg("check")
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn the_reference_config_sets_every_option() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.yaml"))
            .unwrap();
    for key in [
        "listen:",
        "threads:",
        "upgrade_sock:",
        "grace_period:",
        "access_log:",
        "environment:",
        "key_prefix:",
        "admin:",
        "token_env:",
        "metrics:",
        "forward_auth:",
        "store:",
        "url:",
        "sync_interval:",
        "max_staleness:",
        "snapshot_file:",
        "trusted_proxies:",
        "infrastructure_ips:",
        "policy:",
        "block_legacy_keys:",
        "max_key_lifetime:",
        "permissions:",
        "presets:",
        "roles:",
        "oauth:",
        "issuer:",
        "audience:",
        "signing_key_path:",
        "access_token_ttl:",
        "refresh_token_ttl:",
        "auth_code_ttl:",
        "external_issuers:",
        "jwks_url:",
        "rate_limits:",
        "backend:",
        "replicas:",
        "tiers:",
        "anonymous:",
        "api_key:",
        "per_minute:",
        "per_day:",
        "burst:",
        "cost:",
        "analytics:",
        "retention:",
        "upstreams:",
        "targets:",
        "tls:",
        "connect_timeout:",
        "read_timeout:",
        "routes:",
        "path_prefix:",
        "methods:",
        "upstream:",
        "require:",
        "rate_limit:",
        "name:",
        "webhooks:",
        "allow_private_destinations:",
        "max_attempts:",
        "retry_base:",
        "leak_reports:",
        "github_public_keys_path:",
        "action:",
    ] {
        assert!(
            text.contains(key),
            "config/tollgate.yaml does not show {key}"
        );
    }
}

const BAD: &str = r#"listen: 0.0.0.0:8080
threads: 0
lisen: 0.0.0.0:8081
store:
  url: mysql://db
  sync_interval: 10
permissions: [accounts:read, accounts:write]
upstreams:
  accounts:
    targets: [127.0.0.1:3000]
    read_timeout: soon
routes:
  - path_prefix: /v1/accounts
    upstream: accounts
    require: [accounts:read]
  - path_prefix: /v1/billing
    upstream: billing
    require: [acounts:read]
"#;

#[test]
fn every_error_is_reported_with_its_path_and_line() {
    let errors = Config::parse(BAD).unwrap_err().0;
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "threads: expected a whole number of at least 1, found 0 (line 2)",
            "lisen: unknown key \"lisen\", did you mean \"listen\"? (line 3)",
            "store.url: expected sqlite://PATH or postgres://... (line 5)",
            "store.sync_interval: expected a string, found a number (line 6)",
            "upstreams.accounts.read_timeout: \"soon\" is not a duration like 500ms, 10s, 1m, 1h or 90d (line 11)",
            "routes[1].upstream: unknown upstream \"billing\" (line 17)",
            "routes[1].require[0]: unknown permission \"acounts:read\" (line 18)",
        ]
    );
}

#[test]
fn check_prints_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("7 error(s)"), "{stderr}");
    assert!(stderr.contains("routes[1].require[0]: unknown permission \"acounts:read\" (line 18)"));

    let missing = Command::new(BIN)
        .args(["check", "--config", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));

    let usage = Command::new(BIN)
        .args(["check", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));

    // serve refuses a bad config before binding anything.
    let serve = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(1));
}

#[test]
fn syntax_errors_carry_their_line_and_types_are_enforced() {
    let errors = Config::parse("listen: [0.0.0.0:8080\nthreads: 2\n")
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].line.is_some(), "{:?}", errors[0]);

    let errors = Config::parse(
        "trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, nope]\nrate_limits:\n  backend: memcached://x\n  tiers:\n    api_key: { per_minute: 0, per_day: 10 }\n  burst: { requests: 10 }\nenvironment: Staging\n",
    )
    .unwrap_err()
    .0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "trusted_proxies[1]",
            "trusted_proxies[2]",
            "rate_limits.backend",
            "rate_limits.tiers.api_key.per_minute",
            "rate_limits.burst.per",
            "environment",
        ]
    );
}

#[test]
fn an_empty_file_is_all_defaults() {
    let config = Config::parse("").unwrap();
    assert_eq!(config.listen, vec!["0.0.0.0:8080".parse().unwrap()]);
    assert_eq!(config.admin.listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(config.metrics.listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(config.rate_limits.tiers.api_key.per_minute, 300);
    assert_eq!(
        config.store.sync_interval,
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn admin_and_metrics_never_share_the_data_plane_port() {
    let errors = Config::parse("listen: 0.0.0.0:9090\n").unwrap_err().0;
    assert_eq!(errors[0].path, "admin.listen");
}

#[test]
fn forward_auth_is_off_unless_set_and_needs_its_own_address() {
    assert!(Config::parse("threads: 1\n")
        .unwrap()
        .forward_auth
        .is_none());
    let on = Config::parse("forward_auth: { listen: 127.0.0.1:8081 }\n").unwrap();
    assert_eq!(on.forward_auth.unwrap().listen.port(), 8081);
    let cases = [
        ("forward_auth: {}\n", "forward_auth.listen"),
        (
            "forward_auth: { listen: 127.0.0.1:8081, path: /x }\n",
            "forward_auth.path",
        ),
        (
            "forward_auth: { listen: 127.0.0.1:9090 }\n",
            "forward_auth.listen",
        ),
        (
            "listen: 0.0.0.0:8081\nforward_auth: { listen: 127.0.0.1:8081 }\n",
            "forward_auth.listen",
        ),
    ];
    for (text, path) in cases {
        let errors = Config::parse(text).unwrap_err().0;
        assert!(errors.iter().any(|e| e.path == path), "{text}: {errors:?}");
    }
}

#[test]
fn secret_urls_can_come_from_the_environment() {
    std::env::set_var("TOLLGATE_TEST_STORE_URL_A", "postgres://u:p@db/x");
    let config = Config::parse("store: { url_env: TOLLGATE_TEST_STORE_URL_A }\n").unwrap();
    assert_eq!(
        config.store.url,
        tollgate::config::StoreUrl::Postgres("postgres://u:p@db/x".into())
    );
    let errors = Config::parse("store: { url_env: TOLLGATE_TEST_STORE_URL_UNSET }\n")
        .unwrap_err()
        .0;
    assert_eq!(
        errors[0].to_string(),
        "store.url_env: the environment variable TOLLGATE_TEST_STORE_URL_UNSET is not set (line 1)"
    );
    let both = Config::parse("store: { url: sqlite://x.db, url_env: TOLLGATE_TEST_STORE_URL_A }\n")
        .unwrap_err()
        .0;
    assert!(both[0].message.contains("not both"));
    std::env::set_var("TOLLGATE_TEST_STORE_URL_B", "mysql://secret-password@db");
    let bad = Config::parse("store: { url_env: TOLLGATE_TEST_STORE_URL_B }\n")
        .unwrap_err()
        .0;
    assert!(
        !bad[0].to_string().contains("secret-password"),
        "a secret value is never echoed"
    );
}

/// `tollgate check` on `text`: exit code, stdout, stderr.
fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_file_without_settings_is_not_ok() {
    for text in ["", "# only a comment\n", "---\n"] {
        let (code, out, err) = check(text);
        assert_eq!(code, Some(1), "{text:?}: {out}");
        assert!(err.contains("the file has no settings"), "{err}");
        assert!(!out.contains("ok"));
    }
}

#[test]
fn every_duplicate_key_is_reported_on_its_line_with_every_other_error() {
    let text = "listen: 127.0.0.1:8080\nthreads: 0\nadmin:\n  listen: 127.0.0.1:9090\n  listen: 127.0.0.1:9091\nlisten: 127.0.0.1:8081\nupstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n  - { path_prefix: /v1, upstream: nowhere }\n";
    let (code, _, err) = check(text);
    assert_eq!(code, Some(1));
    for line in [
        "threads: expected a whole number of at least 1, found 0 (line 2)",
        "admin.listen: duplicate key \"listen\" (first written on line 4); the first one is used (line 5)",
        "listen: duplicate key \"listen\" (first written on line 1); the first one is used (line 6)",
        "routes[0].upstream: unknown upstream \"nowhere\" (line 9)",
    ] {
        assert!(err.contains(line), "missing `{line}` in:\n{err}");
    }
    assert!(err.contains("4 error(s)"), "{err}");
}

#[test]
fn check_warns_about_a_route_that_can_never_match() {
    let text = "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n  - path_prefix: /v1\n    upstream: u\n  - path_prefix: /v1/accounts\n    methods: [GET]\n    upstream: u\n";
    let (code, out, err) = check(text);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok, with 1 warning(s)"), "{out}");
    assert!(
        err.contains("warning: routes[1]: never matches: routes[0] (/v1 for every method, line 3) comes first"),
        "{err}"
    );
    assert!(err.contains("(line 5)"), "{err}");
    // The other order is what was meant: no warning.
    let text = "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n  - { path_prefix: /v1/accounts, methods: [GET], upstream: u }\n  - { path_prefix: /v1, upstream: u }\n";
    let (code, out, err) = check(text);
    assert_eq!(
        (code, out.trim_end().ends_with(": ok")),
        (Some(0), true),
        "{out}{err}"
    );
}

#[test]
fn the_reference_config_asks_no_identity_provider_by_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.yaml");
    let config = Config::load(std::path::Path::new(path)).unwrap();
    assert!(
        config.oauth.external_issuers.is_empty(),
        "a copied config would fetch a JWKS from idp.example.com at every start"
    );
    // The commented example stays valid: uncommented, it loads.
    let text = std::fs::read_to_string(path).unwrap();
    let uncommented = text
        .replace("  external_issuers: []\n", "")
        .replace("  # external_issuers:\n", "  external_issuers:\n")
        .replace("  #   - issuer:", "    - issuer:")
        .replace("  #     jwks_url:", "      jwks_url:")
        .replace("  #     audience:", "      audience:");
    let config = Config::parse(&uncommented).unwrap();
    assert_eq!(config.oauth.external_issuers.len(), 1);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn cidrs_and_route_names_say_what_is_wrong() {
    let errors = Config::parse("trusted_proxies: [10.0.0.1/8]\n")
        .unwrap_err()
        .0;
    assert!(
        errors[0].message.contains("10.0.0.1/32") && errors[0].message.contains("10.0.0.0/8"),
        "{errors:?}"
    );
    // Route windows are counted by name: two routes with windows need two names.
    let text = "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n  - { path_prefix: /a, methods: [GET], upstream: u, rate_limit: { requests: 1, per: 1s } }\n  - { path_prefix: /a, methods: [POST], upstream: u, rate_limit: { requests: 2, per: 1s } }\n";
    let errors = Config::parse(text).unwrap_err().0;
    assert_eq!(errors[0].path, "routes[1].rate_limit", "{errors:?}");
    assert!(errors[0].message.contains("routes[0]"), "{errors:?}");
    let named = text.replace("methods: [POST],", "methods: [POST], name: a-writes,");
    assert!(Config::parse(&named).is_ok());
    let errors = Config::parse(
        "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n  - { path_prefix: /a, upstream: u, name: \"caf\u{e9}\" }\n",
    )
    .unwrap_err()
    .0;
    assert_eq!(errors[0].path, "routes[0].name");
}

#[test]
fn custom_operator_roles_are_checked_with_their_path_and_line() {
    let text = "admin:\n  roles:\n    support: [keys:read, analytics:read]\n    broken: [keys:read, keys:delete]\n    owner: [keys:read]\n";
    let errors: Vec<String> = Config::parse(text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("admin.roles.broken[1]: unknown admin permission \"keys:delete\""),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("(line 4)"), "{errors:?}");
    assert!(
        errors[1].starts_with("admin.roles.owner: \"owner\" is a built-in role"),
        "{errors:?}"
    );
    let config =
        Config::parse("admin:\n  roles:\n    support: [keys:read]\n  session_ttl: 8h\n").unwrap();
    assert_eq!(config.admin.roles.len(), 1);
    assert_eq!(
        config.admin.session_ttl,
        std::time::Duration::from_secs(8 * 3600)
    );
}
