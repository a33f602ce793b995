//! Rate limits and quotas end to end: exact windows with their headers, refusals that
//! count nothing, the daily quota across a restart, two gateways sharing one Redis, and
//! Redis going away and coming back.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn limited_config(up: &Upstream, store: &str, backend: &str) -> String {
    credentials_config(up, store, "live").replace(
        "permissions: [accounts:read, accounts:write]",
        &format!(
            "rate_limits:\n  backend: {backend}\n  replicas: 2\n  tiers:\n    anonymous: {{ per_minute: 5, per_day: 1000 }}\n    api_key: {{ per_minute: 1000, per_day: 10000 }}\n    oauth: {{ per_minute: 1000, per_day: 10000 }}\n  burst: {{ requests: 1000, per: 10s }}\npermissions: [accounts:read, accounts:write]"
        ),
    )
}

async fn status(client: &reqwest::Client, url: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_callers_get_exactly_their_minute_with_headers() {
    let up = upstream();
    let gw = Gateway::start(&limited_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        "local",
    ));
    let http = reqwest::Client::new();
    let url = gw.url("/v1/public/x");
    away_from_window_edges(Duration::from_secs(10)).await;

    // Refused requests count nothing: bad keys and missing credentials first.
    for _ in 0..10 {
        let refused = status(&http, &gw.url("/v1/accounts"), Some("tg_live_garbage")).await;
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers()["x-ratelimit-limit"],
            "5",
            "refusals carry the headers too"
        );
        assert_eq!(refused.headers()["x-ratelimit-remaining"], "5");
    }
    for n in 1..=5u64 {
        let ok = status(&http, &url, None).await;
        assert_eq!(ok.status(), 200, "request {n}");
        let headers = ok.headers();
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(
            headers["x-ratelimit-remaining"],
            (5 - n).to_string().as_str()
        );
        let reset: i64 = headers["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset));
        assert!(headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("\"minute\";q=5;w=60"));
        assert!(headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"minute\";r="));
    }
    let refused = status(&http, &url, None).await;
    assert_eq!(refused.status(), 429);
    let retry: i64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // The upstream saw exactly five.
    assert_eq!(up.recorder.requests().len(), 5);
    let scrape = gw.scrape();
    assert_eq!(metric(&scrape, "tollgate_rate_limit_decisions_total{result=\"limited\",tier=\"anonymous\",window=\"minute\"}"), 1.0, "{scrape}");
    assert!(metric(&scrape, "tollgate_rate_limit_decisions_total{result=\"allowed\",tier=\"anonymous\",window=\"minute\"}") >= 5.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_quota_is_exact_refusals_spare_it_and_it_survives_a_restart() {
    let up = upstream();
    let mut gw = Gateway::start(&limited_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        "local",
    ));
    let admin = Admin::of(&gw);
    let (_, key) = admin
        .create_key(json!({"name": "q", "permissions": ["accounts:read"], "rate_limit": {"per_minute": 1000, "per_day": 3}}))
        .await;
    let http = reqwest::Client::new();
    // Refused for permission (POST needs accounts:write): never counted.
    for _ in 0..5 {
        let refused = http
            .post(gw.url("/v1/accounts"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
    }
    for _ in 0..2 {
        assert_eq!(
            status(&http, &gw.url("/v1/accounts"), Some(&key))
                .await
                .status(),
            200
        );
    }
    let code = tokio::task::spawn_blocking(move || {
        let code = gw.signal_and_wait("TERM", Duration::from_secs(10));
        (gw, code)
    })
    .await
    .unwrap();
    let (mut gw, code) = code;
    assert_eq!(code, Some(0));
    gw.spawn();
    let url = gw.url("/v1/accounts");
    let third = status(&http, &url, Some(&key)).await;
    assert_eq!(third.status(), 200);
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
    let fourth = status(&http, &url, Some(&key)).await;
    assert_eq!(fourth.status(), 429);
    let body: serde_json::Value = fourth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let admin = Admin::of(&gw);
    let (_, keys) = admin.get("/keys").await;
    let id = keys["data"][0]["id"].as_str().unwrap().to_string();
    let usage = usage_when(&admin, &id, |u| used(u, "quota_exceeded") >= 1).await;
    assert_eq!(usage["days"][0]["outcomes"]["quota_exceeded"], 1, "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_on_one_redis_allow_the_limit_and_no_more() {
    let up = upstream();
    let redis = PrivateRedis::start(free_port());
    let db = Backend::postgres();
    let config = limited_config(&up, &db.url(), &redis.url());
    let (a, b) =
        tokio::task::spawn_blocking(move || (Gateway::start(&config), Gateway::start(&config)))
            .await
            .unwrap();
    let limit = 200u64;
    let (_, key) = Admin::of(&a)
        .create_key(json!({"name": "shared", "permissions": ["accounts:read"], "rate_limit": {"per_minute": 100000, "per_day": limit}}))
        .await;
    // Replica B learns the key within its sync interval.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&http, &b.url("/v1/public/warmup"), Some(&key))
        .await
        .status()
        == 401
    {
        assert!(
            Instant::now() < deadline,
            "B never learned the key:\n{}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warmups = 1;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let url = if worker % 2 == 0 {
            a.url("/v1/accounts")
        } else {
            b.url("/v1/accounts")
        };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut counts = (0u64, 0u64, 0u64);
            for _ in 0..60 {
                let response = status(&http, &url, Some(&key)).await;
                match response.status().as_u16() {
                    200 => counts.0 += 1,
                    429 => counts.1 += 1,
                    _ => counts.2 += 1,
                }
            }
            counts
        }));
    }
    let (mut allowed, mut limited, mut other) = (warmups, 0, 0);
    for task in tasks {
        let (ok, no, odd) = task.await.unwrap();
        allowed += ok;
        limited += no;
        other += odd;
    }
    println!("two replicas, one Redis: {allowed} allowed of a daily quota of {limit} ({limited} refused, {other} other)");
    assert_eq!(other, 0);
    assert!(
        allowed >= limit && allowed <= limit + limit / 100,
        "{allowed} allowed for a limit of {limit}"
    );
    assert_eq!(
        metric(&a.scrape(), "tollgate_rate_limit_fallback_total"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_redis_goes_away_limits_fall_back_and_recover_without_5xx() {
    let up = upstream();
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    let gw = Gateway::start(&limited_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        &redis.url(),
    ));
    let http = reqwest::Client::new();
    let url = gw.url("/v1/public/x");
    away_from_window_edges(Duration::from_secs(20)).await;
    assert_eq!(status(&http, &url, None).await.status(), 200);
    assert_eq!(
        metric(&gw.scrape(), "tollgate_rate_limit_fallback_active"),
        0.0
    );

    redis.stop();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status(&http, &url, None).await.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // Each of the 2 replicas allows 5 / 2 = 2 per minute on its own.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    let scrape = gw.scrape();
    assert_eq!(
        metric(&scrape, "tollgate_rate_limit_fallback_active"),
        1.0,
        "{scrape}"
    );
    assert!(metric(&scrape, "tollgate_rate_limit_fallback_total") >= 6.0);

    let _redis = PrivateRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = status(&http, &url, None).await;
        assert!(response.status() == 200 || response.status() == 429);
        if metric(&gw.scrape(), "tollgate_rate_limit_fallback_active") == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Back on Redis, which was restarted empty: the shared minute starts over.
    assert_eq!(status(&http, &url, None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn route_windows_are_named_and_counted_by_name_not_position() {
    let up = upstream();
    let redis = PrivateRedis::start(free_port());
    let route = "  - path_prefix: /v1/reports\n    name: reports\n    upstream: echo\n    anonymous: true\n    rate_limit: { requests: 3, per: 60s }\n";
    let other = "  - path_prefix: /v1/other\n    upstream: echo\n    anonymous: true\n    rate_limit: { requests: 5, per: 60s }\n";
    let config = |routes: String| {
        limited_config(&up, "sqlite://{dir}/data/tollgate.db", &redis.url())
            .replace("routes:\n", &format!("routes:\n{routes}"))
    };
    // The same route, first in one gateway and second in the other, on one Redis.
    let (first, second) = (config(route.to_string()), config(format!("{other}{route}")));
    let (a, b) =
        tokio::task::spawn_blocking(move || (Gateway::start(&first), Gateway::start(&second)))
            .await
            .unwrap();
    away_from_window_edges(Duration::from_secs(10)).await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let allowed = status(&http, &a.url("/v1/reports/x"), None).await;
        assert_eq!(allowed.status(), 200);
        let policy = allowed.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(policy.contains("\"reports\";q=3;w=60"), "{policy}");
    }
    let third = status(&http, &b.url("/v1/reports/x"), None).await;
    assert_eq!(third.status(), 200);
    let refused = status(&http, &b.url("/v1/reports/x"), None).await;
    assert_eq!(
        refused.status(),
        429,
        "one window, by name, whatever its position"
    );
    assert!(refused.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"reports\";r=0"));
    // A route without a name has its window under its path prefix.
    let unnamed = status(&http, &b.url("/v1/other"), None).await;
    assert_eq!(unnamed.status(), 200);
    let policy = unnamed.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("\"/v1/other\";q=5;w=60"), "{policy}");
}
