//! Analytics (SPEC 15): 1,000 requests with mixed outcomes across three replicas on one
//! PostgreSQL, counted once each: the API's hourly counts add up to exactly what the
//! clients saw, by route and outcome, per key and per owner, in JSON and in CSV, and the
//! CLI draws them.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

/// Sums `rows` by (route, outcome).
fn by_route_and_outcome(rows: &[Value]) -> BTreeMap<(String, String), i64> {
    let mut sums = BTreeMap::new();
    for row in rows {
        let key = (
            row["route"].as_str().unwrap_or("").to_string(),
            row["outcome"].as_str().unwrap_or("").to_string(),
        );
        *sums.entry(key).or_default() += row["count"].as_i64().unwrap();
    }
    sums
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_counted_once_by_route_and_outcome_across_replicas() {
    let up = upstream();
    let pg = PrivatePostgres::start();
    let config = credentials_config(&up, &pg.url(), "live")
        .replace(
            "  - path_prefix: /v1/accounts\n    methods: [GET]\n",
            "  - path_prefix: /v1/accounts\n    name: accounts-read\n    methods: [GET]\n",
        )
        .replace(
            "  - path_prefix: /v1/accounts\n    methods: [POST]\n",
            "  - path_prefix: /v1/accounts\n    name: accounts-write\n    methods: [POST]\n",
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
    let (_, owner) = admin.post("/owners", json!({"name": "Acme"})).await;
    let owner_id = owner["id"].as_str().unwrap().to_string();
    let (a_id, a) = admin
        .create_key(json!({"name": "a", "permissions": ["accounts:read"], "owner_id": owner_id}))
        .await;
    let (_, b) = admin
        .create_key(json!({"name": "b", "permissions": ["accounts:read"], "rate_limit": {"per_minute": 40, "per_day": 100000}}))
        .await;
    let (_, c) = admin
        .create_key(
            json!({"name": "c", "permissions": ["accounts:read"], "ip_allowlist": ["10.9.9.9"]}),
        )
        .await;
    // Every replica knows the three keys before the count starts.
    let http = reqwest::Client::new();
    let gauge = "tollgate_credentials{type=\"fine_grained\"}";
    for (i, gw) in replicas.iter().enumerate() {
        let known = metric(&scrape_until(gw, gauge, 3.0), gauge);
        assert_eq!(known, 3.0, "replica {i} knows {known} of the three keys");
    }

    // 1,000 requests, 20 at a time: allowed, insufficient_permission, rate_limited and
    // ip_not_allowed, on two routes, through three replicas.
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut of_a = 0;
    for batch in 0..50 {
        let mut sent = Vec::new();
        for j in 0..20 {
            let i = batch * 20 + j;
            let url = replicas[i % 3].url("/v1/accounts");
            let (key, post) = match i % 4 {
                0 => (a.clone(), false),
                1 => (a.clone(), true),
                2 => (b.clone(), false),
                _ => (c.clone(), false),
            };
            if i % 4 < 2 {
                of_a += 1;
            }
            let http = http.clone();
            sent.push(tokio::spawn(async move {
                let request = match post {
                    true => http.post(url).body("{}"),
                    false => http.get(url),
                };
                let response = request.header("X-API-Key", key).send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                let route = if post {
                    "accounts-write"
                } else {
                    "accounts-read"
                };
                let outcome = match status {
                    200 => "allowed".to_string(),
                    _ => code(&body).to_string(),
                };
                (route.to_string(), outcome)
            }));
        }
        for answer in sent {
            *expected.entry(answer.await.unwrap()).or_default() += 1;
        }
    }
    assert_eq!(expected.values().sum::<i64>(), 1000);
    let outcomes: std::collections::BTreeSet<&str> =
        expected.keys().map(|(_, o)| o.as_str()).collect();
    assert!(
        outcomes.contains("rate_limited")
            && outcomes.contains("insufficient_permission")
            && outcomes.contains("ip_not_allowed"),
        "{expected:?}"
    );

    // Flushed within seconds; the hours of the last day by route and outcome, summed.
    let path = "/analytics?group_by=route,outcome";
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let (status, page) = admin.get(path).await;
        assert_eq!(status, 200, "{page}");
        let rows = page["data"].as_array().unwrap().clone();
        let total: i64 = rows.iter().map(|r| r["count"].as_i64().unwrap()).sum();
        if total >= 1000 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(by_route_and_outcome(&rows), expected);
    for row in &rows {
        let start = row["start"].as_str().unwrap();
        assert!(
            start.ends_with(":00:00Z"),
            "hours start on the hour: {start}"
        );
    }

    // Per key and per owner: the owner's keys' requests, refused ones included.
    let (_, keyed) = admin
        .get(&format!("/analytics?key_id={a_id}&granularity=day"))
        .await;
    let a_total: i64 = keyed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_i64().unwrap())
        .sum();
    assert_eq!(a_total, of_a);
    assert!(
        keyed["data"][0]["key_id"] == a_id.as_str()
            && keyed["data"][0]["start"]
                .as_str()
                .unwrap()
                .ends_with("T00:00:00Z")
    );
    let (_, owned) = admin.get(&format!("/analytics?owner_id={owner_id}")).await;
    let owner_total: i64 = owned["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_i64().unwrap())
        .sum();
    assert_eq!(owner_total, of_a);

    // CSV: the same rows, with a header of their field names.
    let csv = reqwest::Client::new()
        .get(replicas[1].admin_url(&format!("/admin/v1{path}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("start,route,outcome,count"));
    let from_csv: Vec<Value> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            json!({"route": fields[1], "outcome": fields[2], "count": fields[3].parse::<i64>().unwrap()})
        })
        .collect();
    assert_eq!(by_route_and_outcome(&from_csv), expected);

    // Bad input gets its code.
    let (status, refused) = admin.get("/analytics?granularity=week").await;
    assert_eq!((status, code(&refused)), (400, "invalid_request"));

    // The terminal chart.
    let out = Command::new(BIN)
        .args(["keys", "usage", &a_id, "--hours", "3"])
        .env(
            "TOLLGATE_ADMIN_URL",
            format!("http://{}", replicas[2].admin),
        )
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with(&format!("{of_a} requests in the last 3 hours")),
        "{printed}"
    );
    assert!(
        printed.contains("insufficient_permission") && printed.contains('█'),
        "{printed}"
    );
}
