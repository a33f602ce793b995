//! Three replicas on one PostgreSQL and one Redis (both private to this test, so they can
//! be stopped and frozen): propagation latency, shared limits, merged usage, and outages
//! of each with their recovery.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

fn replica_config(up: &Upstream, pg: &PrivatePostgres, redis: &PrivateRedis) -> String {
    credentials_config(up, &pg.url(), "live")
        .replace("sync_interval: 1s, max_staleness: 5m", "sync_interval: 1s, max_staleness: 3s")
        .replace(
            "permissions: [accounts:read, accounts:write]",
            &format!("rate_limits: {{ backend: \"{}\", replicas: 3, burst: {{ requests: 100000, per: 10s }} }}\npermissions: [accounts:read, accounts:write]", redis.url()),
        )
}

async fn get(http: &reqwest::Client, gw: &Gateway, key: &str) -> (u16, String) {
    let response = http
        .get(gw.url("/v1/accounts"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

/// How long until `gw` answers `key` with `status`, polling every 2 ms (at most 5 s).
async fn until_status(
    http: &reqwest::Client,
    gw: &Gateway,
    key: &str,
    status: u16,
    from: Instant,
) -> Duration {
    loop {
        if get(http, gw, key).await.0 == status {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < Duration::from_secs(5),
            "{} never answered {status}",
            gw.addr
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn summary(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} min={:.1}ms p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        samples.len(),
        ms(samples[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1])
    );
    at(0.99)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_on_one_postgres_and_one_redis() {
    let up = upstream();
    let mut pg = PrivatePostgres::start();
    let redis_port = free_port();
    let mut redis = PrivateRedis::start(redis_port);
    let config = replica_config(&up, &pg, &redis);
    let replicas = tokio::task::spawn_blocking(move || {
        [
            Gateway::start(&config),
            Gateway::start(&config),
            Gateway::start(&config),
        ]
    })
    .await
    .unwrap();
    let [a, b, c] = &replicas;
    let admin_a = Admin::of(a);
    let admin_b = Admin::of(b);
    let admin_c = Admin::of(c);
    let http = reqwest::Client::new();

    // Propagation: create on A, usable on C; rotate and revoke on A, refused on B and C.
    let mut created = Vec::new();
    let mut rotated = Vec::new();
    let mut revoked = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let (id, key) = admin_a
            .create_key(json!({"name": "p", "permissions": ["accounts:read"]}))
            .await;
        created.push(until_status(&http, c, &key, 200, started).await);
        until_status(&http, b, &key, 200, started).await;
        let started = Instant::now();
        let (_, rotation) = admin_a.post(&format!("/keys/{id}/rotate"), json!({})).await;
        let (on_b, on_c) = tokio::join!(
            until_status(&http, b, &key, 401, started),
            until_status(&http, c, &key, 401, started)
        );
        rotated.extend([on_b, on_c]);
        let new_key = rotation["key"].as_str().unwrap().to_string();
        until_status(&http, b, &new_key, 200, Instant::now()).await;
        until_status(&http, c, &new_key, 200, Instant::now()).await;
        let started = Instant::now();
        admin_a.post(&format!("/keys/{id}/revoke"), json!({})).await;
        let (on_b, on_c) = tokio::join!(
            until_status(&http, b, &new_key, 401, started),
            until_status(&http, c, &new_key, 401, started)
        );
        revoked.extend([on_b, on_c]);
    }
    summary("create on A -> usable on C", &mut created);
    summary("rotate on A -> old secret refused on B, C", &mut rotated);
    let p99 = summary("revoke on A -> refused on B, C", &mut revoked);
    assert!(p99 < Duration::from_secs(1), "revocation p99 {p99:?}");
    // The policy is read from the store by every replica's admin API: at once.
    let started = Instant::now();
    admin_a
        .call(
            Method::PUT,
            "/policy",
            Some(json!({"block_legacy_keys": true})),
        )
        .await;
    let (status, answer) = admin_b
        .post(
            "/keys",
            json!({"name": "l", "type": "legacy", "role": "workbench"}),
        )
        .await;
    println!(
        "policy on A -> enforced by B: {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str().unwrap()),
        (403, "legacy_keys_blocked")
    );

    // The periodic sync is the floor: a change committed without a notification (written
    // straight into the database here) still reaches B and C within sync_interval (1 s).
    let mut floor = Vec::new();
    for _ in 0..3 {
        let (id, key) = admin_a
            .create_key(json!({"name": "quiet", "permissions": ["accounts:read"]}))
            .await;
        for gw in [b, c] {
            until_status(&http, gw, &key, 200, Instant::now()).await;
        }
        revoke_without_notification(&pg.url(), &id).await;
        let started = Instant::now();
        let (on_b, on_c) = tokio::join!(
            until_status(&http, b, &key, 401, started),
            until_status(&http, c, &key, 401, started)
        );
        floor.extend([on_b, on_c]);
    }
    let slowest = summary(
        "revoke without NOTIFY -> refused by the periodic sync",
        &mut floor,
    );
    // A sync starts at most sync_interval after the previous one ended; the bound leaves
    // room for the sync itself on a busy machine.
    assert!(slowest < Duration::from_millis(2000), "{slowest:?}");

    // Writes from every replica at once: creates, patches of one key, and one
    // Idempotency-Key sent to all three; then one listing paged across the replicas.
    let admins = [Admin::of(a), Admin::of(b), Admin::of(c)];
    let (shared_id, _) = admin_a
        .create_key(json!({"name": "shared", "permissions": ["accounts:read"]}))
        .await;
    let mut writes = Vec::new();
    for round in 0..8 {
        for (replica, admin) in admins.iter().enumerate() {
            let base = admin.base.clone();
            let shared = shared_id.clone();
            writes.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let created = http
                    .post(format!("{base}/keys"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"name": format!("concurrent-{replica}-{round}"), "permissions": ["accounts:read"]}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                let patched = http
                    .patch(format!("{base}/keys/{shared}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"metadata": {"by": replica, "round": round}}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                (created, patched)
            }));
        }
    }
    for write in writes {
        assert_eq!(
            write.await.unwrap(),
            (201, 200),
            "every concurrent write lands"
        );
    }
    let idempotent: Vec<_> = admins
        .iter()
        .map(|admin| {
            let base = admin.base.clone();
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(format!("{base}/keys"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("Idempotency-Key", "replicas-once")
                    .json(&json!({"name": "once", "permissions": ["accounts:read"]}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut secrets_shown = 0;
    for answer in idempotent {
        let (status, body) = answer.await.unwrap();
        match status {
            201 => secrets_shown += usize::from(body.get("key").is_some()),
            409 => assert_eq!(body["error"]["code"], "idempotency_in_progress"),
            other => panic!("idempotent create answered {other}: {body}"),
        }
    }
    assert_eq!(secrets_shown, 1, "one create, shown once");
    let mut names = Vec::new();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let admin = &admins[page % 3];
        let path = match &cursor {
            Some(cursor) => format!("/keys?limit=7&cursor={cursor}"),
            None => "/keys?limit=7".to_string(),
        };
        let (status, listed) = admin.get(&path).await;
        assert_eq!(status, 200, "{listed}");
        for key in listed["data"].as_array().unwrap() {
            names.push(key["name"].as_str().unwrap().to_string());
            ids.push(key["id"].as_str().unwrap().to_string());
        }
        match listed["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let concurrent = names
        .iter()
        .filter(|n| n.starts_with("concurrent-"))
        .count();
    let once = names.iter().filter(|n| *n == "once").count();
    assert_eq!(
        (concurrent, once),
        (24, 1),
        "a listing paged across replicas sees each key"
    );
    let listed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listed, "no key listed twice");
    let (_, audit) = admin_c.get("/audit?limit=500").await;
    let creates = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "key.create"
                && e["after"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("concurrent-"))
        })
        .count();
    let patches = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.update" && e["target"] == shared_id.as_str())
        .count();
    assert_eq!((creates, patches), (24, 24), "one audit entry per write");

    // Shared limits: a daily quota of 300 across the three replicas.
    let quota = 300u64;
    let (limited_id, limited_key) = admin_a
        .create_key(json!({"name": "q", "permissions": ["accounts:read"], "rate_limit": {"per_minute": 100000, "per_day": quota}}))
        .await;
    for gw in [b, c] {
        until_status(&http, gw, &limited_key, 200, Instant::now()).await;
    }
    let mut allowed = 2u64;
    let mut refused = 0u64;
    let mut tasks = Vec::new();
    for worker in 0..9 {
        let url = replicas[worker % 3].url("/v1/accounts");
        let key = limited_key.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut counts = (0u64, 0u64, 0u64);
            for _ in 0..50 {
                match http
                    .get(&url)
                    .header("X-API-Key", &key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
                {
                    200 => counts.0 += 1,
                    429 => counts.1 += 1,
                    _ => counts.2 += 1,
                }
            }
            counts
        }));
    }
    for task in tasks {
        let (ok, no, other) = task.await.unwrap();
        assert_eq!(other, 0);
        allowed += ok;
        refused += no;
    }
    println!("three replicas, one Redis: {allowed} allowed of a daily quota of {quota}, {refused} refused");
    assert!(
        allowed >= quota && allowed <= quota + quota / 100,
        "{allowed} allowed"
    );

    // Usage from the three replicas adds up (batches are written every 5 s).
    let usage = usage_when(&admin_b, &limited_id, |u| {
        used(u, "allowed") >= allowed && used(u, "quota_exceeded") >= refused
    })
    .await;
    assert_eq!(usage["days"][0]["outcomes"]["allowed"], allowed, "{usage}");
    assert_eq!(usage["days"][0]["outcomes"]["quota_exceeded"], refused);
    assert!(usage["last_used_at"].is_string());

    // PostgreSQL stopped, then frozen.
    let (known_id, known) = admin_a
        .create_key(json!({"name": "known", "permissions": ["accounts:read"],
            "rate_limit": {"per_minute": 1000000, "per_day": 10000000}}))
        .await;
    let (gone_id, gone) = admin_a
        .create_key(json!({"name": "gone", "permissions": ["accounts:read"]}))
        .await;
    admin_a
        .post(&format!("/keys/{gone_id}/revoke"), json!({}))
        .await;
    for gw in &replicas {
        until_status(&http, gw, &known, 200, Instant::now()).await;
        until_status(&http, gw, &gone, 401, Instant::now()).await;
    }
    let stranger = tollgate::auth::api_key::mint("tg", tollgate::config::Environment::LIVE).secret;
    // A steady load of the known key on every replica runs through both outages.
    let load_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for gw in &replicas {
        let (url, key, stop) = (gw.url("/v1/accounts"), known.clone(), load_stop.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut ok, mut other) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = http
                    .get(&url)
                    .header("X-API-Key", &key)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                match status {
                    200 => ok += 1,
                    status => other.push(status),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, other)
        }));
    }
    for outage in ["stopped", "frozen"] {
        if outage == "stopped" {
            pg.stop();
        } else {
            pg.freeze();
        }
        let began = Instant::now();
        let mut served = 0u64;
        for gw in &replicas {
            assert_eq!(
                get(&http, gw, &known).await.0,
                200,
                "{outage}: known keys keep working"
            );
            assert_eq!(
                get(&http, gw, &gone).await,
                (401, "key_revoked".into()),
                "{outage}: revoked stays revoked"
            );
            served += 1;
        }
        let (status, answer) = admin_a
            .post(
                "/keys",
                json!({"name": "during", "permissions": ["accounts:read"]}),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap()),
            (503, "store_unavailable"),
            "{outage}"
        );
        // Past max_staleness (3 s), an unknown key cannot be called invalid.
        tokio::time::sleep(
            Duration::from_secs(3).saturating_sub(began.elapsed()) + Duration::from_millis(1200),
        )
        .await;
        for gw in &replicas {
            let (status, code) = get(&http, gw, &stranger).await;
            assert_eq!(
                (status, code.as_str()),
                (503, "store_unavailable"),
                "{outage}: never 401, never allowed"
            );
            // A sync caught mid-query by a freeze gives up at its deadline (5 s).
            let deadline = Instant::now() + Duration::from_secs(8);
            while metric(&gw.scrape(), "tollgate_store_up") != 0.0 {
                assert!(Instant::now() < deadline, "{outage}: store_up stayed 1");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(get(&http, gw, &known).await.0, 200);
            served += 1;
        }
        println!("PostgreSQL {outage}: served {served} known-key requests, refused revoked and unknown keys, admin writes 503");
        if outage == "stopped" {
            pg.resume_from_stop();
        } else {
            pg.thaw();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for gw in &replicas {
            while metric(&gw.scrape(), "tollgate_store_up") != 1.0 {
                assert!(
                    Instant::now() < deadline,
                    "{outage}: {} did not recover",
                    gw.addr
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                get(&http, gw, &stranger).await,
                (401, "invalid_api_key".into())
            );
        }
        let (status, _) = admin_b
            .post(
                "/keys",
                json!({"name": "after", "permissions": ["accounts:read"]}),
            )
            .await;
        assert_eq!(status, 201, "{outage}: writes work again without a restart");
    }
    load_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut under_load = 0u64;
    for task in load {
        let (ok, other) = task.await.unwrap();
        assert!(
            other.is_empty(),
            "the known key was refused under load: {other:?}"
        );
        under_load += ok;
    }
    println!("PostgreSQL outages: {under_load} known-key requests under load, none refused");
    // Nothing counted during the outages was lost.
    let expected = 3 + 2 * (3 + 3) + under_load;
    let usage = usage_when(&admin_a, &known_id, |u| used(u, "allowed") >= expected).await;
    assert_eq!(usage["days"][0]["outcomes"]["allowed"], expected, "{usage}");

    // Redis down: every replica falls back, none answers 5xx, all recover.
    redis.stop();
    for gw in &replicas {
        for _ in 0..3 {
            let status = http
                .get(gw.url("/v1/public/x"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!(status == 200 || status == 429, "{status}");
        }
        assert_eq!(
            metric(&gw.scrape(), "tollgate_rate_limit_fallback_active"),
            1.0
        );
    }
    let _redis = PrivateRedis::start(redis_port);
    let deadline = Instant::now() + Duration::from_secs(15);
    for gw in &replicas {
        loop {
            let status = http
                .get(gw.url("/v1/public/x"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!(status == 200 || status == 429);
            if metric(&gw.scrape(), "tollgate_rate_limit_fallback_active") == 0.0 {
                break;
            }
            assert!(Instant::now() < deadline, "{} stayed in fallback", gw.addr);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Revokes `key_id` the way a write does (next change version, under the writers' lock)
/// but without NOTIFY, so only the periodic sync can carry it to the replicas.
async fn revoke_without_notification(url: &str, key_id: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let now = tollgate::clock::now_ms();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(7314529)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let (version,): (i64,) = sqlx::query_as("INSERT INTO changes (at) VALUES ($1) RETURNING id")
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let updated = sqlx::query("UPDATE keys SET revoked_at = $1, version = $2 WHERE id = $3")
        .bind(now)
        .bind(version)
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 1);
    tx.commit().await.unwrap();
}
