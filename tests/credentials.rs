//! The credential scenarios of the credentials issue, end to end: a real gateway process,
//! a recording upstream, the admin API over HTTP, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn call(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

/// Runs a scenario on both backends, as two tests.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$scenario(Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$scenario(Backend::postgres()).await;
            }
        }
    };
}

fn in_days(days: i64) -> String {
    tollgate::clock::rfc3339(tollgate::clock::now_ms() + days * 86_400_000)
}

on_both_backends!(fine_grained_key_rotation_and_revocation);
async fn fine_grained_key_rotation_and_revocation(backend: Backend) {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let local = client_from("127.0.0.1");
    let other = client_from("127.0.0.2");
    let url = gw.url("/v1/accounts");

    // 1. Fine-grained key: the secret appears once.
    let (status, created) = admin
        .post(
            "/keys",
            json!({"name": "salesforce-production", "permissions": ["accounts:read"],
            "ip_allowlist": ["127.0.0.1/32"], "expires_at": in_days(30)}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tg_live_"));
    assert_eq!(created["start"], &secret[..12]);
    assert_eq!(created["type"], "fine_grained");
    let (_, shown) = admin.get(&format!("/keys/{id}")).await;
    assert!(shown.get("key").is_none());
    assert!(!shown.to_string().contains(&secret));
    let (_, listed) = admin.get("/keys").await;
    assert!(!listed.to_string().contains(&secret));

    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &secret)]).await,
        (200, String::new())
    );
    let bearer = format!("Bearer {secret}");
    assert_eq!(
        call(&local, Method::GET, &url, &[("Authorization", &bearer)]).await,
        (200, String::new())
    );
    // The upstream saw the identity, never the credential.
    let seen = up.recorder.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-tollgate-auth-method"), ["api_key"]);
    assert_eq!(last.header("x-tollgate-subject"), [id.as_str()]);
    assert_eq!(
        last.header("x-tollgate-client-id"),
        [created["client_id"].as_str().unwrap()]
    );
    assert_eq!(last.header("x-tollgate-permissions"), ["accounts:read"]);
    assert!(last.header("authorization").is_empty() && last.header("x-api-key").is_empty());
    assert!(!format!("{seen:?}").contains(&secret));

    assert_eq!(
        call(&local, Method::POST, &url, &[("X-API-Key", &secret)]).await,
        (403, "insufficient_permission".into())
    );
    assert_eq!(
        call(&other, Method::GET, &url, &[("X-API-Key", &secret)]).await,
        (403, "ip_not_allowed".into())
    );

    // 2. Rotation: the new secret works at once; the old one is revoked on the next request.
    let (status, rotated) = admin.post(&format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &new_secret)]).await,
        (200, String::new())
    );
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &secret)]).await,
        (401, "key_revoked".into())
    );

    // 3. Revocation is final.
    let (status, revoked) = admin.post(&format!("/keys/{id}/revoke"), json!({})).await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    for key in [&new_secret, &secret] {
        assert_eq!(
            call(&local, Method::GET, &url, &[("X-API-Key", key)]).await,
            (401, "key_revoked".into())
        );
    }
    let (status, again) = admin.post(&format!("/keys/{id}/revoke"), json!({})).await;
    assert_eq!(
        (status, again["error"]["code"].as_str().unwrap()),
        (409, "already_revoked")
    );
    let (status, _) = admin.post(&format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(status, 409);
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"name": "back"})),
        )
        .await;
    assert_eq!(status, 409, "there is no way back");

    // Usage was counted by outcome (flushed every 5 s).
    let usage = usage_when(&admin, &id, |u| {
        used(u, "allowed") >= 3
            && used(u, "insufficient_permission") >= 1
            && used(u, "ip_not_allowed") >= 1
            && used(u, "key_revoked") >= 2
    })
    .await;
    let today = &usage["days"][0]["outcomes"];
    assert_eq!(today["allowed"], 3, "{usage}");
    assert_eq!(today["insufficient_permission"], 1);
    assert_eq!(today["ip_not_allowed"], 1);
    assert!(today["key_revoked"].as_i64().unwrap() >= 2);
    assert!(usage["last_used_at"].is_string());
}

on_both_backends!(rotation_with_grace_keeps_the_old_secret_until_then);
async fn rotation_with_grace_keeps_the_old_secret_until_then(backend: Backend) {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let local = client_from("127.0.0.1");
    let url = gw.url("/v1/accounts");
    let (id, old) = admin
        .create_key(json!({"name": "graceful", "preset": "read_only"}))
        .await;
    let (status, rotated) = admin
        .post(&format!("/keys/{id}/rotate"), json!({"grace": "1h"}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["key"].as_str().unwrap();
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", new)])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &old)])
            .await
            .0,
        200
    );
    // Answers to the old secret say it is deprecated and when it stops (RFC 9745,
    // RFC 8594), refusals included; answers to the new one say nothing of the kind.
    let rotated_at =
        tollgate::clock::parse_rfc3339(rotated["rotated_at"].as_str().unwrap()).unwrap();
    let sunset = tollgate::clock::http_date(rotated_at + 3_600_000);
    // (A read-only key: GET is allowed, POST refused with 403.)
    for (method, status) in [(Method::GET, 200), (Method::POST, 403)] {
        let response = local
            .request(method.clone(), &url)
            .header("X-API-Key", &old)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let headers = response.headers();
        assert_eq!(
            headers["deprecation"],
            format!("@{}", rotated_at / 1000).as_str(),
            "{method}"
        );
        assert_eq!(headers["sunset"], sunset.as_str(), "{method}");
    }
    let response = local
        .get(&url)
        .header("X-API-Key", new)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("deprecation").is_none());
    assert!(response.headers().get("sunset").is_none());
    let (status, too_long) = admin
        .post(&format!("/keys/{id}/rotate"), json!({"grace": "30d"}))
        .await;
    assert_eq!(
        (status, too_long["error"]["code"].as_str().unwrap()),
        (400, "invalid_request")
    );
}

on_both_backends!(policy_bounds_new_keys_and_legacy_keys_keep_working);
async fn policy_bounds_new_keys_and_legacy_keys_keep_working(backend: Backend) {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let local = client_from("127.0.0.1");
    let (_, legacy) = admin
        .create_key(json!({"name": "old-integration", "type": "legacy", "role": "workbench"}))
        .await;

    let (status, policy) = admin
        .call(
            Method::PUT,
            "/policy",
            Some(json!({"max_key_lifetime": "90d"})),
        )
        .await;
    assert_eq!(
        (status, policy["max_key_lifetime"].as_str()),
        (200, Some("90d"))
    );
    let (status, error) = admin
        .post(
            "/keys",
            json!({"name": "n", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str().unwrap()),
        (400, "expiry_required")
    );
    let (status, error) = admin
        .post(
            "/keys",
            json!({"name": "n", "permissions": ["accounts:read"], "expires_at": in_days(120)}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str().unwrap()),
        (400, "expiry_beyond_max_lifetime")
    );
    let (status, bounded) = admin
        .post(
            "/keys",
            json!({"name": "n", "permissions": ["accounts:read"], "expires_at": in_days(60)}),
        )
        .await;
    assert_eq!(status, 201);
    // Rotation is held to the same policy.
    let rotate = format!("/keys/{}/rotate", bounded["id"].as_str().unwrap());
    let (status, error) = admin.post(&rotate, json!({})).await;
    assert_eq!(
        (status, error["error"]["code"].as_str().unwrap()),
        (400, "expiry_required")
    );
    let (status, error) = admin
        .post(&rotate, json!({"expires_at": in_days(120)}))
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str().unwrap()),
        (400, "expiry_beyond_max_lifetime")
    );
    let (status, rotated) = admin
        .post(&rotate, json!({"expires_at": in_days(80)}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["key"].as_str().is_some());

    let (status, policy) = admin
        .call(
            Method::PUT,
            "/policy",
            Some(json!({"block_legacy_keys": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        policy,
        json!({"block_legacy_keys": true, "max_key_lifetime": "90d"})
    );
    let (status, error) = admin
        .post(
            "/keys",
            json!({"name": "n", "type": "legacy", "role": "workbench", "expires_at": in_days(10)}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str().unwrap()),
        (403, "legacy_keys_blocked")
    );
    // The existing legacy key still authenticates, with its role's permissions.
    assert_eq!(
        call(
            &local,
            Method::POST,
            &gw.url("/v1/accounts"),
            &[("X-API-Key", &legacy)]
        )
        .await
        .0,
        200
    );
    let (_, shown) = admin.get("/policy").await;
    assert_eq!(shown["block_legacy_keys"], true);
    // Every change is in the audit log, without secrets.
    let (_, audit) = admin.get("/audit?limit=500").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "policy.update", "newest first");
    assert_eq!(actions.iter().filter(|a| **a == "policy.update").count(), 2);
    assert_eq!(actions.last(), Some(&"policy.seed"));
    assert!(actions.contains(&"key.create"));
    assert!(!audit.to_string().contains(&legacy));
}

on_both_backends!(expiry_with_a_shifted_clock_and_the_wrong_environment);
async fn expiry_with_a_shifted_clock_and_the_wrong_environment(backend: Backend) {
    let up = upstream();
    let url = backend.url();
    // A test-environment gateway honours the test clock offset.
    let mut gw = Gateway::start(&credentials_config(&up, &url, "test"));
    let admin = Admin::of(&gw);
    let local = client_from("127.0.0.1");
    let (_, secret) = admin
        .create_key(json!({"name": "short-lived", "permissions": ["accounts:read"], "expires_at": in_days(1)}))
        .await;
    assert!(secret.starts_with("tg_test_"));
    assert_eq!(
        call(
            &local,
            Method::GET,
            &gw.url("/v1/accounts"),
            &[("X-API-Key", &secret)]
        )
        .await
        .0,
        200
    );
    // Two days later (the same store, the clock moved on):
    gw.kill();
    gw.env = vec![(
        "TOLLGATE_TEST_CLOCK_OFFSET".into(),
        (2 * 86_400_000).to_string(),
    )];
    gw.spawn();
    assert_eq!(
        call(
            &local,
            Method::GET,
            &gw.url("/v1/accounts"),
            &[("X-API-Key", &secret)]
        )
        .await,
        (401, "key_expired".into())
    );

    // A tg_test_ key on a live gateway is the wrong environment, whatever its state.
    let live = Gateway::start(&credentials_config(&up, "sqlite://{dir}/live.db", "live"));
    assert_eq!(
        call(
            &local,
            Method::GET,
            &live.url("/v1/accounts"),
            &[("X-API-Key", &secret)]
        )
        .await,
        (401, "wrong_environment".into())
    );
    // And a live gateway ignores the test clock.
    let shifted = Gateway::start_with_env(
        &credentials_config(&up, "sqlite://{dir}/live.db", "live"),
        &[("TOLLGATE_TEST_CLOCK_OFFSET", "86400000".into())],
    );
    assert!(shifted
        .stderr()
        .contains("TOLLGATE_TEST_CLOCK_OFFSET ignored"));
}

on_both_backends!(everything_survives_a_restart);
async fn everything_survives_a_restart(backend: Backend) {
    let up = upstream();
    let mut gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let local = client_from("127.0.0.1");
    let (kept, kept_secret) = admin
        .create_key(json!({"name": "kept", "permissions": ["accounts:read"]}))
        .await;
    let (gone, gone_secret) = admin
        .create_key(json!({"name": "gone", "permissions": ["accounts:read"]}))
        .await;
    admin.post(&format!("/keys/{gone}/revoke"), json!({})).await;
    admin
        .call(
            Method::PUT,
            "/policy",
            Some(json!({"block_legacy_keys": true})),
        )
        .await;
    assert_eq!(
        call(
            &local,
            Method::GET,
            &gw.url("/v1/accounts"),
            &[("X-API-Key", &kept_secret)]
        )
        .await
        .0,
        200
    );

    let code = tokio::task::spawn_blocking(move || {
        let code = gw.signal_and_wait("TERM", Duration::from_secs(10));
        (gw, code)
    })
    .await
    .unwrap();
    let (mut gw, code) = code;
    assert_eq!(code, Some(0));
    // While the store is held locked the snapshot cannot load: /readyz says 503 and a
    // key is not judged (503, never 401); once it is released, 200.
    let lock = StoreLock::take(&backend, gw.dir.path()).await;
    let mut gw = tokio::task::spawn_blocking(move || {
        gw.spawn_unready();
        gw
    })
    .await
    .unwrap();
    let url = gw.url("/v1/accounts");
    assert_eq!(http_get(gw.admin, "/readyz").unwrap().status, 503);
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &kept_secret)]).await,
        (503, "store_unavailable".into())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(http_get(gw.admin, "/readyz").unwrap().status, 503);
    lock.release().await;
    let gw = tokio::task::spawn_blocking(move || {
        gw.wait_ready();
        gw
    })
    .await
    .unwrap();
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &kept_secret)])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&local, Method::GET, &url, &[("X-API-Key", &gone_secret)]).await,
        (401, "key_revoked".into())
    );
    let admin = Admin::of(&gw);
    assert_eq!(admin.get("/policy").await.1["block_legacy_keys"], true);
    // The usage of the first run was flushed on the clean stop.
    let (_, usage) = admin.get(&format!("/keys/{kept}/usage")).await;
    assert_eq!(usage["days"][0]["outcomes"]["allowed"], 1, "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_store_and_unknown_keys_get_503_meanwhile() {
    let up = upstream();
    let db = TestDatabase::named(&format!(
        "tollgate_late_{}",
        tollgate::auth::base62::random(8).to_lowercase()
    ));
    let gw = Gateway::start_unready(&credentials_config(&up, &db.url, "live"));
    assert_eq!(http_get(gw.admin, "/healthz").unwrap().status, 200);
    assert_eq!(http_get(gw.admin, "/readyz").unwrap().status, 503);
    let key = tollgate::auth::api_key::mint("tg", tollgate::config::Environment::LIVE).secret;
    let local = client_from("127.0.0.1");
    // Never synced: an unknown key cannot be called invalid.
    assert_eq!(
        call(
            &local,
            Method::GET,
            &gw.url("/v1/accounts"),
            &[("X-API-Key", &key)]
        )
        .await,
        (503, "store_unavailable".into())
    );
    let (status, error) = Admin::of(&gw)
        .post(
            "/keys",
            json!({"name": "n", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str().unwrap()),
        (503, "store_unavailable")
    );
    assert!(gw.scrape().contains("tollgate_store_up 0"));

    // The database appears: the gateway connects, migrates, loads, and is ready.
    db.execute_on_server(&format!("CREATE DATABASE {}", db.name));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http_get(gw.admin, "/readyz").unwrap().status != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", gw.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        call(
            &local,
            Method::GET,
            &gw.url("/v1/accounts"),
            &[("X-API-Key", &key)]
        )
        .await,
        (401, "invalid_api_key".into())
    );
    let scrape = gw.scrape();
    assert!(scrape.contains("tollgate_store_up 1"), "{scrape}");
    assert!(metric(&scrape, "tollgate_snapshot_syncs_total{result=\"ok\"}") >= 1.0);
}

on_both_backends!(infrastructure_addresses_join_the_allowlist_on_request);
async fn infrastructure_addresses_join_the_allowlist_on_request(backend: Backend) {
    let up = upstream();
    // The config's infrastructure_ips is [127.0.0.3/32].
    let gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let (_, with) = admin
        .create_key(json!({"name": "with", "permissions": ["accounts:read"],
            "ip_allowlist": ["203.0.113.9/32"], "allow_infrastructure_ips": true}))
        .await;
    let (_, without) = admin
        .create_key(json!({"name": "without", "permissions": ["accounts:read"],
            "ip_allowlist": ["203.0.113.9/32"]}))
        .await;
    // Only the box ticked, no addresses of its own: the infrastructure alone.
    let (_, only) = admin
        .create_key(json!({"name": "only", "permissions": ["accounts:read"],
            "allow_infrastructure_ips": true}))
        .await;
    let url = gw.url("/v1/accounts");
    let infrastructure = client_from("127.0.0.3");
    let elsewhere = client_from("127.0.0.2");
    assert_eq!(
        call(&infrastructure, Method::GET, &url, &[("X-API-Key", &only)])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&elsewhere, Method::GET, &url, &[("X-API-Key", &only)]).await,
        (403, "ip_not_allowed".into())
    );
    assert_eq!(
        call(&infrastructure, Method::GET, &url, &[("X-API-Key", &with)])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&elsewhere, Method::GET, &url, &[("X-API-Key", &with)]).await,
        (403, "ip_not_allowed".into())
    );
    assert_eq!(
        call(
            &infrastructure,
            Method::GET,
            &url,
            &[("X-API-Key", &without)]
        )
        .await,
        (403, "ip_not_allowed".into())
    );
    // The refusal never reveals the list.
    let response = elsewhere
        .get(&url)
        .header("X-API-Key", &with)
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("203.0.113") && !body.contains("127.0.0.3"),
        "{body}"
    );
    assert_eq!(up.recorder.requests().len(), 2);

    // A CIDR with host bits set is refused, with both readings; nothing is widened.
    for (body, path) in [
        (
            json!({"name": "wide", "permissions": ["accounts:read"], "ip_allowlist": ["10.0.0.1/8"]}),
            "/keys".to_string(),
        ),
        (
            json!({"ip_allowlist": ["127.0.0.2/8"]}),
            format!("/keys/{}", only_id(&admin, "only").await),
        ),
    ] {
        let method = if path == "/keys" {
            Method::POST
        } else {
            Method::PATCH
        };
        let (status, error) = admin.call(method, &path, Some(body)).await;
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            (status, error["error"]["code"].as_str().unwrap()),
            (400, "invalid_cidr"),
            "{error}"
        );
        assert!(
            message.contains("/32") && message.contains(".0.0.0/8"),
            "{message}"
        );
    }
    // A rotation may set the allowlist anew (seed 001: "when creating or rotating").
    let id = only_id(&admin, "only").await;
    let (status, rotated) = admin
        .post(
            &format!("/keys/{id}/rotate"),
            json!({"ip_allowlist": ["127.0.0.2"]}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["ip_allowlist"], json!(["127.0.0.2/32"]));
    let new = rotated["key"].as_str().unwrap();
    assert_eq!(
        call(&elsewhere, Method::GET, &url, &[("X-API-Key", new)])
            .await
            .0,
        200
    );
}

/// The id of the key named `name`.
async fn only_id(admin: &Admin, name: &str) -> String {
    let (_, keys) = admin.get("/keys?limit=500").await;
    keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == name)
        .and_then(|key| key["id"].as_str())
        .unwrap()
        .to_string()
}

/// Stops `gw` cleanly (SIGTERM) and hands it back, stopped, for a later start.
async fn stopped(mut gw: Gateway) -> Gateway {
    tokio::task::spawn_blocking(move || {
        assert_eq!(gw.signal_and_wait("TERM", Duration::from_secs(10)), Some(0));
        gw
    })
    .await
    .unwrap()
}

/// Starts `gw` again on its config and folder, and waits until it is ready.
async fn started(mut gw: Gateway) -> Gateway {
    tokio::task::spawn_blocking(move || {
        gw.spawn();
        gw
    })
    .await
    .unwrap()
}

/// Starts `gw` again, waiting only for its listeners.
async fn started_unready(mut gw: Gateway) -> Gateway {
    tokio::task::spawn_blocking(move || {
        gw.spawn_unready();
        gw
    })
    .await
    .unwrap()
}

/// Waits until `gw`'s log has said `line` `times` times.
async fn logged(gw: &Gateway, line: &str, times: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gw.stderr().matches(line).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "never logged {line:?} {times} times:\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `snapshot loaded` lines of `gw`'s log.
fn loads(gw: &Gateway) -> Vec<String> {
    gw.stderr()
        .lines()
        .filter(|line| line.contains("snapshot loaded"))
        .map(str::to_string)
        .collect()
}

on_both_backends!(a_restart_builds_from_the_snapshot_file_and_refuses_keys_revoked_while_down);
async fn a_restart_builds_from_the_snapshot_file_and_refuses_keys_revoked_while_down(
    backend: Backend,
) {
    let up = upstream();
    let config = credentials_config(&up, &backend.url(), "live");
    let gw = Gateway::start(&config);
    let file = match backend {
        Backend::Sqlite => gw.dir.path().join("data/tollgate.db.snapshot"),
        Backend::Postgres(_) => gw.dir.path().join("tollgate.snapshot"),
    };
    // The first start has no file: it loads from the store and writes one.
    logged(&gw, "snapshot file written", 1).await;
    assert!(loads(&gw)[0].contains("from=\"store\""), "{}", gw.stderr());
    let admin = Admin::of(&gw);
    let (_, kept_secret) = admin
        .create_key(json!({"name": "kept", "permissions": ["accounts:read"]}))
        .await;
    let (gone, gone_secret) = admin
        .create_key(json!({"name": "gone", "permissions": ["accounts:read"]}))
        .await;

    // A restart builds from the file and catches up on the two keys created since, then
    // rewrites the file, which now holds them.
    let gw = stopped(gw).await;
    let gw = started(gw).await;
    assert!(loads(&gw)[1].contains("from=\"file\""), "{}", gw.stderr());
    logged(&gw, "snapshot file written", 2).await;
    let written = std::fs::read(&file).unwrap();
    assert!(
        !String::from_utf8_lossy(&written).contains(&kept_secret[8..]),
        "the file holds digests, never a secret"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the file");
    }
    let gw = stopped(gw).await;

    // While it is down, another process on the same store revokes a key.
    let url = match &backend {
        Backend::Sqlite => format!("sqlite://{}/data/tollgate.db", gw.dir.path().display()),
        Backend::Postgres(db) => db.url.clone(),
    };
    let other = Gateway::start(&credentials_config(&up, &url, "live").replace(
        "max_staleness: 5m }",
        "max_staleness: 5m, snapshot_file: off }",
    ));
    let (status, _) = Admin::of(&other)
        .post(&format!("/keys/{gone}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200);
    let other = stopped(other).await;
    assert!(
        !other.stderr().contains("snapshot file written"),
        "snapshot_file: off writes none"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        written,
        "the file is untouched"
    );

    // Started again from the file: from its very first answer the revoked key is refused,
    // before /readyz turns 200 and after.
    let gw = started_unready(gw).await;
    let local = client_from("127.0.0.1");
    let proxied = gw.url("/v1/accounts");
    let mut answers = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http_get(gw.admin, "/readyz").unwrap().status == 200;
        let answer = call(
            &local,
            Method::GET,
            &proxied,
            &[("X-API-Key", &gone_secret)],
        )
        .await;
        assert!(
            answer == (401, "key_revoked".into()) || answer == (503, "store_unavailable".into()),
            "a key revoked while down answered {answer:?}"
        );
        *answers.entry(answer).or_insert(0) += 1;
        if ready {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", gw.stderr());
    }
    assert!(loads(&gw)[2].contains("from=\"file\""), "{}", gw.stderr());
    assert_eq!(
        call(
            &local,
            Method::GET,
            &proxied,
            &[("X-API-Key", &gone_secret)]
        )
        .await,
        (401, "key_revoked".into()),
        "{answers:?}"
    );
    assert_eq!(
        call(
            &local,
            Method::GET,
            &proxied,
            &[("X-API-Key", &kept_secret)]
        )
        .await,
        (200, String::new())
    );

    // A damaged file is set aside with a log line: the start loads from the store.
    logged(&gw, "snapshot file written", 3).await;
    let gw = stopped(gw).await;
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&file, &damaged).unwrap();
    let gw = started(gw).await;
    assert!(
        gw.stderr().contains("the snapshot file is not used"),
        "{}",
        gw.stderr()
    );
    assert!(loads(&gw)[3].contains("from=\"store\""), "{}", gw.stderr());
    assert_eq!(
        call(
            &local,
            Method::GET,
            &proxied,
            &[("X-API-Key", &gone_secret)]
        )
        .await,
        (401, "key_revoked".into())
    );
    assert_eq!(
        call(
            &local,
            Method::GET,
            &proxied,
            &[("X-API-Key", &kept_secret)]
        )
        .await,
        (200, String::new())
    );
    logged(&gw, "snapshot file written", 4).await;
    let good = std::fs::read(&file).unwrap();
    assert_ne!(good, damaged, "a sound file replaced the damaged one");

    if let Backend::Sqlite = backend {
        // The store is replaced by a new one: the file, from the old one, is not used.
        let gw = stopped(gw).await;
        for name in ["tollgate.db", "tollgate.db-wal", "tollgate.db-shm"] {
            let _ = std::fs::remove_file(gw.dir.path().join("data").join(name));
        }
        let gw = started(gw).await;
        assert!(
            gw.stderr().contains("written from another store"),
            "{}",
            gw.stderr()
        );
        assert!(loads(&gw)[4].contains("from=\"store\""), "{}", gw.stderr());
        assert_eq!(
            call(
                &local,
                Method::GET,
                &proxied,
                &[("X-API-Key", &kept_secret)]
            )
            .await,
            (401, "invalid_api_key".into()),
            "a key of the old store is unknown to the new one"
        );
    }
}
