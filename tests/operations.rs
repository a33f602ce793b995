//! Running tollgate: the access log, a real scrape through promtool, the alert rules and
//! dashboard, and graceful upgrades under load that lose no request.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn promtool() -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/promtool");
    if local.exists() {
        return local;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "promtool is missing: run `.ci/deps.sh test` (make test does)"
    );
    PathBuf::from(String::from_utf8_lossy(&found.stdout).trim())
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_carry_every_field_and_never_a_secret() {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        "live",
    ));
    let admin = Admin::of(&gw);
    let (status, created) = admin
        .post(
            "/keys",
            json!({"name": "canary", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(status, 201);
    let canary = created["key"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let ok = http
        .get(gw.url(&format!("/v1/accounts/1?api_key={canary}")))
        .header("X-API-Key", &canary)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let id = ok.headers()["x-request-id"].to_str().unwrap().to_string();
    http.post(gw.url("/v1/accounts"))
        .bearer_auth(&canary)
        .send()
        .await
        .unwrap();
    let token: serde_json::Value = http
        .post(gw.url("/oauth/token"))
        .basic_auth(created["client_id"].as_str().unwrap(), Some(&canary))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    http.get(gw.url("/v1/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    http.get(gw.url("/v1/accounts"))
        .header("Authorization", format!("Basic {canary}"))
        .send()
        .await
        .unwrap();
    http.get(gw.url("/nowhere")).send().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 6 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = lines
        .iter()
        .find(|l| l["request_id"] == id.as_str())
        .expect("the allowed request is logged");
    for field in [
        "ts",
        "route",
        "method",
        "path",
        "status",
        "auth_method",
        "key_id",
        "client_id",
        "outcome",
        "client",
        "upstream",
        "upstream_status",
        "duration_ms",
        "auth_ms",
        "upstream_ms",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    assert_eq!(first["status"], 200);
    assert_eq!(first["auth_method"], "api_key");
    assert_eq!(first["key_id"], created["id"]);
    assert_eq!(first["outcome"], "allowed");
    assert_eq!(first["path"], "/v1/accounts/1", "no query string");
    let outcomes: Vec<&str> = lines.iter().filter_map(|l| l["outcome"].as_str()).collect();
    assert!(
        outcomes.contains(&"insufficient_permission") && outcomes.contains(&"route_not_found"),
        "{outcomes:?}"
    );
    assert!(lines.iter().any(|l| l["auth_method"] == "oauth"));
    let everything = format!("{}{}", gw.stdout(), gw.stderr());
    assert!(
        !everything.contains(&canary),
        "the canary key leaked into the logs"
    );
    assert!(
        !everything.contains(&token),
        "an access token leaked into the logs"
    );
    assert!(!everything.to_ascii_lowercase().contains("authorization:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_scrape_passes_promtool_and_has_every_metric() {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        "live",
    ));
    // Counters whose label values are known in advance are there at 0 from the start.
    let fresh = gw.scrape();
    for series in [
        "tollgate_tokens_issued_total{grant=\"client_credentials\"} 0",
        "tollgate_tokens_issued_total{grant=\"authorization_code\"} 0",
        "tollgate_tokens_issued_total{grant=\"refresh_token\"} 0",
        "tollgate_signins_total{result=\"ok\"} 0",
        "tollgate_signins_total{result=\"failed\"} 0",
        "tollgate_signins_total{result=\"throttled\"} 0",
        "tollgate_auth_decisions_total{method=\"api_key\",outcome=\"key_revoked\"} 0",
        "tollgate_snapshot_syncs_total{result=\"error\"} 0",
    ] {
        assert!(fresh.contains(series), "{series} missing before first use");
    }
    let admin = Admin::of(&gw);
    let (_, key) = admin
        .create_key(json!({"name": "m", "permissions": ["accounts:read"]}))
        .await;
    let http = reqwest::Client::new();
    http.get(gw.url("/v1/accounts"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    http.get(gw.url("/v1/accounts")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let scrape = gw.scrape();
    for name in [
        "tollgate_requests_total",
        "tollgate_request_duration_seconds",
        "tollgate_auth_duration_seconds",
        "tollgate_auth_decisions_total",
        "tollgate_rate_limit_decisions_total",
        "tollgate_upstream_requests_total",
        "tollgate_upstream_duration_seconds",
        "tollgate_credentials",
        "tollgate_snapshot_age_seconds",
        "tollgate_snapshot_syncs_total",
        "tollgate_store_up",
        "tollgate_build_info",
        "tollgate_tokens_issued_total",
        "tollgate_admin_requests_total",
        "tollgate_signins_total",
    ] {
        assert!(
            scrape.contains(&format!("\n{name}")),
            "{name} missing from the scrape"
        );
    }
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), scrape.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // No label holds a raw path, an address or a secret.
    assert!(
        !scrape.contains(&key)
            && !scrape.contains("127.0.0.1")
            && !scrape.contains("/v1/accounts/")
    );
}

#[test]
fn the_alert_rules_pass_promtool_and_the_dashboard_covers_the_signals() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(root.join("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    for signal in [
        "tollgate_store_up",
        "tollgate_snapshot_age_seconds",
        "status=~\"5..\"",
        "tollgate_rate_limit_fallback_active",
        "tollgate_upstream_requests_total",
        "tollgate_webhook_deliveries_total",
    ] {
        assert!(rules.contains(signal), "no alert on {signal}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/tollgate-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: String = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    for metric in [
        "tollgate_requests_total",
        "tollgate_auth_decisions_total",
        "tollgate_request_duration_seconds_bucket",
        "tollgate_rate_limit_decisions_total",
        "tollgate_snapshot_age_seconds",
        "tollgate_webhook_deliveries_total",
        "tollgate_webhook_queue_depth",
    ] {
        assert!(
            exprs.contains(metric),
            "the dashboard does not show {metric}"
        );
    }
}

/// A config that lets the load through the rate limits.
fn upgrade_config(up: &Upstream) -> String {
    basic_config(up).replace(
        "permissions: [accounts:read, accounts:write]",
        "rate_limits:\n  tiers:\n    anonymous: { per_minute: 100000000, per_day: 1000000000 }\n    api_key: { per_minute: 100000000, per_day: 1000000000 }\n  burst: { requests: 100000000, per: 10s }\npermissions: [accounts:read, accounts:write]",
    )
}

fn start_upgrade(gw: &Gateway, config: &std::path::Path) -> std::process::Child {
    let sock = gw.dir.path().join("upgrade.sock");
    let _ = std::fs::remove_file(&sock);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(gw.dir.path().join("upgrades.log"))
        .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--upgrade", "--config"])
        .arg(config)
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process never listened on the upgrade socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn quit_and_wait(pid: u32, within: Duration) -> Option<i32> {
    Command::new("kill")
        .args(["-QUIT", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Some(0);
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            return Some(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn three_graceful_upgrades_under_load_lose_no_request() {
    let up = upstream();
    let gw = Gateway::start(&upgrade_config(&up));
    let config = gw.config_path.clone();
    let (_, key) = Admin::of(&gw)
        .create_key(json!({"name": "load", "permissions": ["accounts:read"]}))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for client in 0..16 {
        // Half the clients call a protected route with a key: each new process must have
        // its snapshot before it takes the sockets over.
        let (path, key) = match client % 2 {
            0 => ("/v1/accounts/load", Some(key.clone())),
            _ => ("/v1/public/load", None),
        };
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), gw.url(path));
        clients.push(tokio::spawn(async move {
            // One keep-alive connection per client.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let mut request = http.get(&url);
                if let Some(key) = &key {
                    request = request.header("x-api-key", key);
                }
                match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        let _ = response.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        eprintln!("failed: {}", response.status());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("failed: {error:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A bad config (the running one with a typo) is refused before anything is touched:
    // the old process keeps its sockets and keeps serving.
    let bad = gw.dir.path().join("bad.yaml");
    let running = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &bad,
        running.replace("require: [accounts:read]", "require: [acounts:read]"),
    )
    .unwrap();
    let refused = Command::new(BIN)
        .args(["serve", "--upgrade", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown permission"));
    // A process that cannot load its snapshot never takes the sockets either.
    let unreadable = gw.dir.path().join("unreadable.yaml");
    let store = running
        .lines()
        .find(|line| line.starts_with("store:"))
        .unwrap()
        .to_string();
    std::fs::write(
        &unreadable,
        running.replace(
            &store,
            "store: { url: \"sqlite:///proc/tollgate/none.db\" }",
        ),
    )
    .unwrap();
    let refused = Command::new(BIN)
        .args(["serve", "--upgrade", "--config"])
        .arg(&unreadable)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot load the snapshot"));
    assert!(std::path::Path::new(&format!("/proc/{}", gw.pid())).exists());
    assert_eq!(
        http_get(gw.addr, "/v1/public/after-bad").unwrap().status,
        200
    );

    let mut current = gw.pid();
    let mut children = Vec::new();
    for round in 1..=3 {
        let slow: Vec<_> = (0..3)
            .map(|_| {
                let url = gw.url("/slow/2500");
                tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Each upgrade brings a configuration change: a new route.
        let changed = std::fs::read_to_string(&config).unwrap().replacen(
            "routes:\n",
            &format!("routes:\n  - path_prefix: /v1/round{round}\n    upstream: echo\n    anonymous: true\n"),
            1,
        );
        std::fs::write(&config, changed).unwrap();
        let child = start_upgrade(&gw, &config);
        let old = current;
        let quit = tokio::task::spawn_blocking(move || quit_and_wait(old, Duration::from_secs(30)));
        assert_eq!(
            quit.await.unwrap(),
            Some(0),
            "round {round}: the old process did not drain and exit"
        );
        for request in slow {
            assert_eq!(
                request.await.unwrap().unwrap(),
                200,
                "round {round}: an in-flight slow request failed"
            );
        }
        let added = http_get(gw.addr, &format!("/v1/round{round}/x")).unwrap();
        assert_eq!(added.status, 200, "round {round}: the new route is served");
        current = child.id();
        children.push(child);
        println!(
            "upgrade {round}: {} requests served, {} failed",
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (served, lost) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("three upgrades under load: {served} requests, {lost} failed");
    assert!(served > 500, "{served}");
    assert_eq!(
        lost,
        0,
        "requests failed during the upgrades:\n{}",
        std::fs::read_to_string(gw.dir.path().join("upgrades.log")).unwrap_or_default()
    );
}
