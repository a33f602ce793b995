//! Redis Cluster (SPEC 15): a real three-node cluster started by the test. An owner's
//! limit and an owner's credits are exact across replicas (every key one script touches
//! shares a hash tag, so each check stays one atomic script), and a node that dies is the
//! fallback of section 8: answers keep coming, limited locally, never a 5xx.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// Requests alternating `keys` and `replicas`, a few dozen in flight: statuses and codes.
async fn on(replicas: &[Gateway], keys: &[String], n: usize) -> Vec<(u16, String)> {
    let urls: Vec<String> = replicas.iter().map(|gw| gw.url("/v1/accounts")).collect();
    burst(&urls, keys, n).await
}

/// Waits until at least `margin` is left in the current clock minute.
async fn with_a_minute_ahead(margin: Duration) {
    let into = tollgate::clock::now_ms().rem_euclid(60_000);
    let left = Duration::from_millis((60_000 - into) as u64);
    if left < margin {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_limits_and_credits_hold_on_a_cluster_and_a_dead_node_falls_back() {
    let up = upstream();
    let pg = PrivatePostgres::start();
    let mut cluster = PrivateRedisCluster::start();
    let config = credentials_config(&up, &pg.url(), "live").replace(
        "permissions: [accounts:read, accounts:write]",
        &format!(
            "rate_limits: {{ backend: \"{}\", replicas: 3, burst: {{ requests: 100000, per: 10s }} }}\npermissions: [accounts:read, accounts:write]",
            cluster.url()
        ),
    );
    let replicas = tokio::task::spawn_blocking(move || {
        [
            Gateway::start(&config),
            Gateway::start(&config),
            Gateway::start(&config),
        ]
    })
    .await
    .unwrap();
    let admin = Admin::of(&replicas[0]);
    let own = json!({"per_minute": 100000, "per_day": 1000000});

    // An owner with 100 a minute and 60 credits, two keys.
    let (_, owner) = admin.post("/owners", json!({"name": "Initech"})).await;
    let owner_id = owner["id"].as_str().unwrap().to_string();
    let mut keys = Vec::new();
    for name in ["one", "two"] {
        let (_, key) = admin
            .create_key(json!({"name": name, "permissions": ["accounts:read"], "owner_id": owner_id, "rate_limit": own}))
            .await;
        keys.push(key);
    }
    // Twenty more keys of no owner, whose tags spread over the cluster's slots.
    let mut spread = Vec::new();
    for i in 0..20 {
        let (_, key) = admin
            .create_key(json!({"name": format!("spread-{i}"), "permissions": ["accounts:read"], "rate_limit": own}))
            .await;
        spread.push(key);
    }
    let gauge = "tollgate_credentials{type=\"fine_grained\"}";
    for gw in &replicas {
        scrape_until(gw, gauge, 22.0);
    }
    let every = on(&replicas, &spread, 60).await;
    assert!(every.iter().all(|(s, _)| *s == 200), "{every:?}");

    admin
        .call(
            reqwest::Method::PATCH,
            &format!("/owners/{owner_id}"),
            Some(json!({"rate_limit": {"per_minute": 100, "per_day": 100000}})),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    with_a_minute_ahead(Duration::from_secs(25)).await;
    let answers = on(&replicas, &keys, 300).await;
    let allowed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(
        answers
            .iter()
            .all(|(s, c)| *s == 200 || (*s == 429 && c == "rate_limited")),
        "{answers:?}"
    );
    println!("on the cluster, owner limit 100/min, 2 keys, 3 replicas: {allowed} of 300 allowed");
    assert_eq!(allowed, 100);

    // Credits on the cluster: 60 for the owner, spent from two replicas at once.
    admin
        .call(
            reqwest::Method::PATCH,
            &format!("/owners/{owner_id}"),
            Some(json!({"rate_limit": null, "credits": {"remaining": 60}})),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answers = on(&replicas[..2], &keys, 150).await;
    let spent = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(
        answers
            .iter()
            .all(|(s, c)| *s == 200 || (*s == 429 && c == "credits_exhausted")),
        "{answers:?}"
    );
    println!("on the cluster, 60 credits, 150 requests from 2 replicas: {spent} allowed");
    assert_eq!(spent, 60);
    for gw in &replicas {
        assert_eq!(
            metric(&gw.scrape(), "tollgate_rate_limit_fallback_total"),
            0.0
        );
    }

    // A node dies: every request is still answered, some of them limited locally.
    cluster.kill(2);
    let mut fell_back = false;
    for _ in 0..5 {
        let answers = on(&replicas, &spread, 60).await;
        assert!(
            answers.iter().all(|(s, _)| *s == 200),
            "no 5xx and no refusal within the keys' own limits: {answers:?}"
        );
        fell_back = replicas
            .iter()
            .any(|gw| metric(&gw.scrape(), "tollgate_rate_limit_fallback_total") > 0.0);
        if fell_back {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(fell_back, "the dead node's keys were limited locally");
}
