//! Credits (SPEC 15): spent by route cost from a key and its owner, changed by operators
//! from the balance the data plane counted, refilled across a UTC day boundary (the clock
//! shifted), exact across two replicas on Redis, and rebuilt from the store when Redis
//! loses its data.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

/// GET /v1/accounts (cost 3) with `key`: the status, the error code and X-Credits-Remaining.
async fn spend(http: &reqwest::Client, gw: &Gateway, key: &str) -> (u16, String, Option<u64>) {
    let response = http
        .get(gw.url("/v1/accounts"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let left = response
        .headers()
        .get("x-credits-remaining")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = response.json().await.unwrap_or_default();
    (status, code(&body).to_string(), left)
}

fn with_costs(config: String) -> String {
    config
        .replacen(
            "    require: [accounts:read]\n",
            "    require: [accounts:read]\n    cost: 3\n",
            1,
        )
        .replace(
            "permissions: [accounts:read, accounts:write]",
            "rate_limits: { burst: { requests: 100000, per: 10s } }\npermissions: [accounts:read, accounts:write]",
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_are_spent_by_cost_from_key_and_owner_and_changed_by_operators() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/credits.db", dir.path().display());
    let gw = Gateway::start(&with_costs(credentials_config(&up, &store, "live")));
    let admin = Admin::of(&gw);
    let http = reqwest::Client::new();

    // 10 credits, a route of cost 3: three allowed, the fourth refused, the balance is 1.
    let (id, key) = admin
        .create_key(json!({"name": "metered", "permissions": ["accounts:read"], "credits": {"remaining": 10}}))
        .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(spend(&http, &gw, &key).await);
    }
    assert_eq!(
        seen,
        [
            (200, String::new(), Some(7)),
            (200, String::new(), Some(4)),
            (200, String::new(), Some(1)),
            (429, "credits_exhausted".into(), Some(0)),
        ]
    );
    assert_eq!(up.recorder.requests().len(), 3);
    // Written back within seconds.
    admin
        .until(&format!("/keys/{id}"), |k| k["credits"]["remaining"] == 1)
        .await;

    // An operator's change starts from the balance counted: 1 + 5 = 6, then two requests.
    let (status, changed) = admin
        .post(
            &format!("/keys/{id}/credits"),
            json!({"op": "increment", "amount": 5}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["credits"]["remaining"], 6);
    assert_eq!(spend(&http, &gw, &key).await.2, Some(3));
    assert_eq!(spend(&http, &gw, &key).await.2, Some(0));
    assert_eq!(spend(&http, &gw, &key).await.1, "credits_exhausted");
    let (_, lowered) = admin
        .post(
            &format!("/keys/{id}/credits"),
            json!({"op": "decrement", "amount": 50}),
        )
        .await;
    assert_eq!(lowered["credits"]["remaining"], 0, "a decrement stops at 0");
    let (status, refused) = admin
        .post(
            &format!("/keys/{id}/credits"),
            json!({"op": "double", "amount": 5}),
        )
        .await;
    assert_eq!((status, code(&refused)), (400, "invalid_request"));
    // The CLI sets them.
    let out = Command::new(BIN)
        .args(["keys", "credits", &id, "set", "9", "--json"])
        .env("TOLLGATE_ADMIN_URL", format!("http://{}", gw.admin))
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["credits"]["remaining"], 9);
    assert_eq!(spend(&http, &gw, &key).await.2, Some(6));
    let (_, audit) = admin
        .get(&format!("/audit?target={id}&action=key.credits"))
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 3, "{audit}");
    assert_eq!(audit["data"][0]["after"]["credits"]["remaining"], 9);

    // An owner's credits are spent by all its keys; a key with credits of its own spends
    // from both, and is refused when either is short.
    let (_, owner) = admin
        .post(
            "/owners",
            json!({"name": "Acme", "credits": {"remaining": 7}}),
        )
        .await;
    let owner_id = owner["id"].as_str().unwrap();
    let (shared_id, shared) = admin
        .create_key(
            json!({"name": "shared", "permissions": ["accounts:read"], "owner_id": owner_id}),
        )
        .await;
    let (both_id, both) = admin
        .create_key(json!({"name": "both", "permissions": ["accounts:read"], "owner_id": owner_id, "credits": {"remaining": 100}}))
        .await;
    assert_eq!(spend(&http, &gw, &shared).await.2, Some(4));
    // The smaller balance after: the owner's 1, not the key's 97.
    assert_eq!(
        spend(&http, &gw, &both).await,
        (200, String::new(), Some(1))
    );
    assert_eq!(spend(&http, &gw, &both).await.1, "credits_exhausted");
    assert_eq!(spend(&http, &gw, &shared).await.1, "credits_exhausted");
    let (_, topped) = admin
        .post(
            &format!("/owners/{owner_id}/credits"),
            json!({"op": "increment", "amount": 3}),
        )
        .await;
    assert_eq!(topped["credits"]["remaining"], 4, "{topped}");
    assert_eq!(spend(&http, &gw, &shared).await.2, Some(1));

    // Running out is announced once a day, as quota.exceeded with the credits window.
    let (exceeded, _) = admin.quota_events(&id).await;
    assert_eq!(exceeded.len(), 1, "{exceeded:?}");
    assert_eq!(exceeded[0]["data"]["quota"]["window"], "credits");
    // The owner's balance ran out: announced once for the owner, not for its keys.
    let (for_owner, subjects) = admin.quota_events(owner_id).await;
    assert_eq!(for_owner.len(), 1, "{for_owner:?}");
    let quota = &for_owner[0]["data"]["quota"];
    assert_eq!(quota["window"], "credits");
    assert!(
        [&shared_id, &both_id].contains(&&quota["key_id"].as_str().unwrap().to_string()),
        "{quota}"
    );
    assert_eq!(for_owner[0]["data"]["name"], "Acme");
    assert!(
        !subjects.contains(&shared_id) && !subjects.contains(&both_id),
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_refill_comes_with_the_utc_day() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/refill.db", dir.path().display());
    // The gateway's clock stands 15 s before a UTC midnight.
    let day = 86_400_000i64;
    let real = tollgate::clock::now_ms();
    let offset = (real.div_euclid(day) + 1) * day - 15_000 - real;
    let gw = Gateway::start_with_env(
        &credentials_config(&up, &store, "test"),
        &[("TOLLGATE_TEST_CLOCK_OFFSET", offset.to_string())],
    );
    let admin = Admin::of(&gw);
    let http = reqwest::Client::new();
    let (_, key) = admin
        .create_key(json!({"name": "daily", "permissions": ["accounts:read"],
            "credits": {"remaining": 2, "refill": {"interval": "day", "amount": 2}}}))
        .await;
    assert_eq!(spend(&http, &gw, &key).await.2, Some(1));
    assert_eq!(spend(&http, &gw, &key).await.2, Some(0));
    assert_eq!(spend(&http, &gw, &key).await.1, "credits_exhausted");
    let shifted = tollgate::clock::now_ms() + offset;
    assert!(shifted.rem_euclid(day) > day - 15_000, "still the same day");
    // Past midnight on the gateway's clock, the next request finds the balance refilled.
    let midnight = (shifted.div_euclid(day) + 1) * day;
    tokio::time::sleep(Duration::from_millis((midnight - shifted + 300) as u64)).await;
    assert_eq!(spend(&http, &gw, &key).await, (200, String::new(), Some(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_never_overspend_and_a_lost_redis_is_rebuilt_from_the_store() {
    let up = upstream();
    let pg = PrivatePostgres::start();
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    let config = credentials_config(&up, &pg.url(), "live").replace(
        "permissions: [accounts:read, accounts:write]",
        &format!(
            "rate_limits: {{ backend: \"{}\", replicas: 2, burst: {{ requests: 100000, per: 10s }} }}\npermissions: [accounts:read, accounts:write]",
            redis.url()
        ),
    );
    let replicas =
        tokio::task::spawn_blocking(move || [Gateway::start(&config), Gateway::start(&config)])
            .await
            .unwrap();
    let admin = Admin::of(&replicas[0]);
    let http = reqwest::Client::new();
    let (_, owner) = admin
        .post(
            "/owners",
            json!({"name": "Initech", "credits": {"remaining": 150}}),
        )
        .await;
    let owner_id = owner["id"].as_str().unwrap().to_string();
    let mut keys = Vec::new();
    for name in ["one", "two"] {
        let (_, key) = admin
            .create_key(
                json!({"name": name, "permissions": ["accounts:read"], "owner_id": owner_id}),
            )
            .await;
        keys.push(key);
    }
    // Both replicas know the keys (each of these spends one credit).
    for gw in &replicas {
        for key in &keys {
            let mut tries = 0;
            while spend(&http, gw, key).await.0 != 200 {
                tries += 1;
                assert!(tries < 500, "{} never took the key", gw.addr);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let urls: Vec<String> = replicas.iter().map(|gw| gw.url("/v1/accounts")).collect();
    let send = |n: usize| {
        let (urls, keys) = (urls.clone(), keys.clone());
        async move {
            let mut allowed = 0;
            for answer in burst(&urls, &keys, n).await {
                match answer {
                    (200, _) => allowed += 1,
                    (429, code) => assert_eq!(code, "credits_exhausted"),
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            allowed
        }
    };
    // 146 left: 100 requests, 24 in flight, from two keys on two replicas, all allowed.
    assert_eq!(send(100).await, 100);
    let owner_path = format!("/owners/{owner_id}");
    admin
        .until(&owner_path, |o| o["credits"]["remaining"] == 46)
        .await;

    // Redis loses everything; the balance comes back from the store.
    redis.stop();
    let _redis = PrivateRedis::start(port);
    let probe = admin
        .create_key(json!({"name": "probe", "permissions": ["accounts:read"]}))
        .await
        .1;
    for gw in &replicas {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            spend(&http, gw, &probe).await;
            if metric(&gw.scrape(), "tollgate_rate_limit_fallback_active") == 0.0 {
                break;
            }
            assert!(Instant::now() < deadline, "{} stayed in fallback", gw.addr);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let allowed = send(100).await;
    println!("after Redis lost its data: {allowed} of 100 allowed from a stored balance of 46");
    assert_eq!(allowed, 46);
    admin
        .until(&owner_path, |o| o["credits"]["remaining"] == 0)
        .await;
}
