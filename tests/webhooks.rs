//! Events (SPEC section 14) end to end: every event type delivered to a receiver that
//! verifies signatures with the official `standardwebhooks` package from PyPI; retries
//! with backoff and their final state; secret rotation's two signatures; the pull stream;
//! the outbox across a failed transaction and a killed process; private destinations;
//! and GitHub leak reports, signed with a test ECDSA key.
#![allow(clippy::unwrap_used)]

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TYPES: [&str; 14] = [
    "key.created",
    "key.updated",
    "key.rotated",
    "key.revoked",
    "key.expiring",
    "key.expired",
    "key.leaked",
    "quota.exceeded",
    "client.created",
    "client.deleted",
    "policy.updated",
    "operator.created",
    "operator.updated",
    "webhook.test",
];

fn python() -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/py/bin/python");
    assert!(
        local.exists(),
        "the Python environment is missing: run `.ci/deps.sh test` (make test does)"
    );
    local
}

/// tests/webhooks/receiver.py on a port of its own.
struct Receiver {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_on(free_port())
    }

    fn start_on(port: u16) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/receiver.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.path().join("ready").exists() {
            assert!(Instant::now() < deadline, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver {
            child: Some(child),
            port,
            dir,
        }
    }

    fn url(&self, behaviour: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{behaviour}/{name}", self.port)
    }

    fn secrets(&self, name: &str, secrets: &[&str]) {
        std::fs::write(
            self.dir.path().join(format!("{name}.secret")),
            secrets.join("\n"),
        )
        .unwrap();
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("received.ndjson"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn of(&self, name: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r["name"] == name)
            .collect()
    }

    /// What endpoint `name` received, once `done` holds of it (or at the deadline).
    async fn wait(
        &self,
        name: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.of(name);
            if done(&got) || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn types_of(received: &[Value]) -> BTreeSet<String> {
    received
        .iter()
        .filter(|r| r["verified"] == true)
        .filter_map(|r| r["body"]["type"].as_str().map(str::to_string))
        .collect()
}

/// A test ECDSA P-256 key, published as GitHub publishes its secret-scanning keys.
struct GithubSigner {
    pair: EcdsaKeyPair,
    document: PathBuf,
}

impl GithubSigner {
    fn new(dir: &std::path::Path) -> GithubSigner {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let der = pair.public_key().as_der().unwrap();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let document = dir.join("github-keys.json");
        let keys = json!({"public_keys": [{"key_identifier": "test-key-1", "key": pem, "is_current": true}]});
        std::fs::write(&document, keys.to_string()).unwrap();
        GithubSigner { pair, document }
    }

    fn sign(&self, body: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(&SystemRandom::new(), body).unwrap().as_ref())
    }
}

fn config(up: &Upstream, backend: &Backend, private: bool, keys: Option<&PathBuf>) -> String {
    let mut yaml = credentials_config(up, &backend.url(), "live");
    yaml.push_str(&format!(
        "webhooks: {{ allow_private_destinations: {private}, timeout: 1s, max_attempts: 4, retry_base: 200ms }}\n"
    ));
    if let Some(keys) = keys {
        yaml.push_str(&format!(
            "leak_reports: {{ github_public_keys_path: \"{}\", action: revoke }}\n",
            keys.display()
        ));
    }
    yaml
}

fn rfc3339_in(seconds: i64) -> String {
    let at = std::time::SystemTime::now() + Duration::from_secs(seconds as u64);
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tollgate::clock::rfc3339(ms + 1000)
}

async fn register(admin: &Admin, url: &str, events: Value) -> (String, String) {
    let (status, hook) = admin
        .post(
            "/webhooks",
            json!({"url": url, "events": events, "description": "test"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{hook}");
    (hook["id"].as_str().unwrap().to_string(), secret)
}

async fn deliveries(admin: &Admin, hook: &str) -> Vec<Value> {
    let (status, page) = admin.get(&format!("/webhooks/{hook}/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

async fn wait_deliveries(admin: &Admin, hook: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = deliveries(admin, hook).await;
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn leak_report(
    gw: &Gateway,
    signer: &GithubSigner,
    tokens: &[&str],
    signature: Option<String>,
) -> (u16, Value) {
    let body = json!(tokens
        .iter()
        .map(|t| json!({"token": t, "type": "tollgate_api_key", "url": "https://github.com/o/r/blob/x", "source": "content"}))
        .collect::<Vec<_>>())
    .to_string();
    let signature = signature.unwrap_or_else(|| signer.sign(body.as_bytes()));
    let response = reqwest::Client::new()
        .post(gw.url("/secret-scanning/github"))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", "test-key-1")
        .header("Github-Public-Key-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call_with(gw: &Gateway, secret: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(gw.url("/v1/accounts/1"))
        .header("X-API-Key", secret)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

/// Every event type, delivered and verified; the stream; secret rotation; a failed change
/// that emits nothing; an event that outlives a killed process; leak reports.
async fn every_event_type(backend: Backend) {
    let up = upstream();
    let receiver = Receiver::start();
    let signer = GithubSigner::new(receiver.dir.path());
    let mut gw = Gateway::start(&config(&up, &backend, true, Some(&signer.document)));
    let admin = Admin::of(&gw);

    let (ok, ok_secret) = register(&admin, &receiver.url("ok", "all"), json!(["*"])).await;
    receiver.secrets("all", &[&ok_secret]);

    // Keys: created, updated, rotated, revoked.
    let (key, first_secret) = admin
        .create_key(json!({"name": "events", "permissions": ["accounts:read"]}))
        .await;
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/keys/{key}"),
            Some(json!({"name": "events-renamed"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, rotated) = admin.post(&format!("/keys/{key}/rotate"), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let rotated_secret = rotated["key"].as_str().unwrap().to_string();
    let (status, _) = admin.post(&format!("/keys/{key}/revoke"), json!({})).await;
    assert_eq!(status, 200);

    // Expiry: one key within a day of its end, one past it a moment from now.
    admin
        .create_key(json!({"name": "ends-soon", "permissions": ["accounts:read"], "expires_at": rfc3339_in(7200)}))
        .await;
    admin
        .create_key(json!({"name": "ends-now", "permissions": ["accounts:read"], "expires_at": rfc3339_in(1)}))
        .await;

    // A daily quota of one: the second request is refused, and announced once.
    let (_, quota_secret) = admin
        .create_key(json!({"name": "quota", "permissions": ["accounts:read"],
            "rate_limit": {"per_minute": 100, "per_day": 1}}))
        .await;
    assert_eq!(call_with(&gw, &quota_secret).await.0, 200);
    for _ in 0..3 {
        let (status, body) = call_with(&gw, &quota_secret).await;
        assert_eq!(status, 429, "{body}");
    }

    // Apps, policy, operators, a test event.
    let (status, client) = admin
        .post(
            "/clients",
            json!({"name": "app", "type": "public",
            "redirect_uris": ["https://app.example/cb"], "scopes": ["accounts:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().unwrap();
    let (status, _) = admin
        .call(Method::DELETE, &format!("/clients/{client_id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, policy) = admin
        .call(
            Method::PUT,
            "/policy",
            Some(json!({"block_legacy_keys": true})),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let (status, operator) = admin
        .post(
            "/operators",
            json!({"email": "ops@example.com", "name": "Ops",
            "password": "a long enough password", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{operator}");
    let operator_id = operator["id"].as_str().unwrap();
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/operators/{operator_id}"),
            Some(json!({"name": "Ops team"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, test) = admin.post(&format!("/webhooks/{ok}/test"), json!({})).await;
    assert_eq!(status, 202, "{test}");

    // A leaked key: revoked at once, labelled, and announced.
    let (leaked, leaked_secret) = admin
        .create_key(json!({"name": "leaked", "permissions": ["accounts:read"]}))
        .await;
    assert_eq!(call_with(&gw, &leaked_secret).await.0, 200);
    let unknown = "tg_live_notakeyatallnotakeyatall0000";
    let (status, labels) = leak_report(&gw, &signer, &[&leaked_secret, unknown], None).await;
    assert_eq!(status, 200, "{labels}");
    assert_eq!(
        labels,
        json!([
            {"token_hash": sha256_hex(&leaked_secret), "token_type": "tollgate_api_key", "label": "true_positive"},
            {"token_hash": sha256_hex(unknown), "token_type": "tollgate_api_key", "label": "false_positive"}
        ])
    );
    assert!(!labels.to_string().contains(&leaked_secret));
    let (status, refused) = call_with(&gw, &leaked_secret).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("key_revoked")),
        "{refused}"
    );

    let got = receiver
        .wait("all", Duration::from_secs(60), |got| {
            types_of(got).len() == TYPES.len()
        })
        .await;
    let expected: BTreeSet<String> = TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        types_of(&got),
        expected,
        "{}",
        receiver.dir.path().display()
    );
    assert!(
        got.iter().all(|r| r["verified"] == true),
        "every delivery verifies: {got:?}"
    );
    for secret in [
        &first_secret,
        &rotated_secret,
        &quota_secret,
        &leaked_secret,
        &ok_secret,
    ] {
        assert!(
            !got.iter().any(|r| r.to_string().contains(secret.as_str())),
            "no secret in any event"
        );
    }
    let revoked: Vec<&Value> = got
        .iter()
        .filter(|r| r["body"]["type"] == "key.revoked" && r["body"]["data"]["id"] == key)
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0]["body"]["data"]["revoked_at"].is_string());
    let quota: Vec<&Value> = got
        .iter()
        .filter(|r| r["body"]["type"] == "quota.exceeded")
        .collect();
    assert_eq!(
        quota.len(),
        1,
        "once a day, however many refusals: {quota:?}"
    );
    assert_eq!(quota[0]["body"]["data"]["quota"]["window"], "day");
    // The leak is audited as the system actor.
    let (_, audit) = admin.get(&format!("/audit?target={leaked}")).await;
    let entry = &audit["data"][0];
    assert_eq!(entry["action"], "key.leak.revoke", "{audit}");
    assert_eq!(entry["actor"]["kind"], "system");
    assert_eq!(entry["actor"]["name"], "secret-scanning");

    // A replayed report changes nothing; a bad signature answers 401 and changes nothing.
    let (status, again) = leak_report(&gw, &signer, &[&leaked_secret], None).await;
    assert_eq!(
        (status, again[0]["label"].as_str()),
        (200, Some("true_positive"))
    );
    let (_, audit_again) = admin.get(&format!("/audit?target={leaked}")).await;
    assert_eq!(
        audit_again["data"].as_array().unwrap().len(),
        audit["data"].as_array().unwrap().len()
    );
    let (_, live_secret) = admin
        .create_key(json!({"name": "live", "permissions": ["accounts:read"]}))
        .await;
    let forged = signer.sign(b"another body");
    let (status, body) = leak_report(&gw, &signer, &[&live_secret], Some(forged)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_signature")),
        "{body}"
    );
    assert_eq!(
        call_with(&gw, &live_secret).await.0,
        200,
        "the key still works"
    );
    let scrape = gw.scrape();
    assert_eq!(
        metric(
            &scrape,
            "tollgate_leak_reports_total{label=\"true_positive\"}"
        ),
        2.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            "tollgate_leak_reports_total{label=\"false_positive\"}"
        ),
        1.0
    );

    // Deliveries are listed, delivered, with the event's id as webhook-id.
    let rows = wait_deliveries(&admin, &ok, |rows| {
        rows.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert!(rows.len() >= TYPES.len(), "{rows:?}");
    let got = receiver.of("all");
    for row in &rows {
        assert_eq!(row["state"], "delivered", "{row}");
        assert_eq!(row["last_status"], 204, "{row}");
        assert!(row["next_attempt_at"].is_null());
        assert!(got.iter().any(|r| r["id"] == row["event_id"]), "{row}");
    }

    // The stream: oldest first, in JSON and NDJSON, resumable from the cursor it hands out.
    let (status, stream) = admin.get("/events?limit=500").await;
    assert_eq!(status, 200, "{stream}");
    let events = stream["data"].as_array().unwrap();
    let stream_types: BTreeSet<String> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stream_types, expected);
    assert!(events
        .iter()
        .all(|e| e["id"].as_str().unwrap().starts_with("evt_")));
    let response = admin
        .http
        .get(format!("{}/events?limit=3", admin.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0]["id"], events[0]["id"]);
    let cursor = lines[3]["next_cursor"].as_str().unwrap();
    let (_, rest) = admin
        .get(&format!("/events?cursor={cursor}&limit=500"))
        .await;
    assert_eq!(
        rest["data"][0]["id"], events[3]["id"],
        "resumes after the third"
    );
    let end = stream["next_cursor"].as_str().unwrap();
    let (_, after_end) = admin.get(&format!("/events?cursor={end}")).await;
    let newer = after_end["data"].as_array().unwrap();
    assert!(
        newer
            .iter()
            .all(|e| !events.iter().any(|old| old["id"] == e["id"])),
        "nothing twice"
    );

    // Rotation: the new secret and, for 24 h, the old one sign every delivery.
    let (status, rotated_hook) = admin
        .post(&format!("/webhooks/{ok}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, 200, "{rotated_hook}");
    let new_secret = rotated_hook["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, ok_secret);
    for only in [&ok_secret, &new_secret] {
        receiver.secrets("all", &[only]);
        let before = receiver.of("all").len();
        admin.post(&format!("/webhooks/{ok}/test"), json!({})).await;
        let got = receiver
            .wait("all", Duration::from_secs(20), |got| got.len() > before)
            .await;
        let last = got.last().unwrap();
        assert_eq!(last["signatures"], 2, "{last}");
        assert_eq!(last["verified"], true, "either secret verifies: {last}");
    }

    // A change whose transaction fails emits nothing.
    let lock = StoreLock::take_writes(&backend, gw.dir.path()).await;
    let (status, body) = admin
        .post(
            "/keys",
            json!({"name": "never-made", "permissions": ["accounts:read"]}),
        )
        .await;
    lock.release().await;
    assert_eq!(status, 503, "{body}");
    let (_, all) = admin.get("/events?limit=500").await;
    assert!(
        !all.to_string().contains("never-made"),
        "no event for a change that rolled back"
    );

    // An event committed just before the process is killed is delivered after its restart.
    let late_port = free_port();
    let (late, late_secret) = register(
        &admin,
        &format!("http://127.0.0.1:{late_port}/ok/late"),
        json!(["key.created"]),
    )
    .await;
    admin
        .create_key(json!({"name": "outlives-a-kill", "permissions": ["accounts:read"]}))
        .await;
    gw.kill();
    let late_receiver = Receiver::start_on(late_port);
    late_receiver.secrets("late", &[&late_secret]);
    gw.spawn();
    let got = late_receiver
        .wait("late", Duration::from_secs(60), |got| !got.is_empty())
        .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["verified"], true);
    assert_eq!(got[0]["body"]["data"]["name"], "outlives-a-kill");
    let admin = Admin::of(&gw);
    // The restarted process scans for expiring keys at once; what was sent is not sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = receiver.of("all");
    for (name, kind) in [("ends-soon", "key.expiring"), ("ends-now", "key.expired")] {
        let sent = all
            .iter()
            .filter(|r| r["body"]["type"] == kind && r["body"]["data"]["name"] == name)
            .count();
        assert_eq!(sent, 1, "{kind} for {name}, across a restart");
    }
    let rows = wait_deliveries(&admin, &late, |rows| {
        rows.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(rows[0]["state"], "delivered", "{rows:?}");
    let scrape = gw.scrape();
    assert!(
        metric(
            &scrape,
            "tollgate_webhook_deliveries_total{result=\"delivered\"}"
        ) >= 1.0,
        "{scrape}"
    );
    assert!(scrape.contains("tollgate_webhook_queue_depth"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_type_reaches_a_verifying_receiver_on_sqlite() {
    every_event_type(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_type_reaches_a_verifying_receiver_on_postgres() {
    every_event_type(Backend::postgres()).await;
}

/// A receiver that fails three times then answers, and one that never answers.
#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_back_off_then_succeed_or_fail_at_max_attempts() {
    let up = upstream();
    let receiver = Receiver::start();
    let gw = Gateway::start(&config(&up, &Backend::Sqlite, true, None));
    let admin = Admin::of(&gw);
    let (flaky, flaky_secret) = register(
        &admin,
        &receiver.url("flaky", "flaky"),
        json!(["policy.updated"]),
    )
    .await;
    let (silent, silent_secret) = register(
        &admin,
        &receiver.url("silent", "silent"),
        json!(["policy.updated"]),
    )
    .await;
    receiver.secrets("flaky", &[&flaky_secret]);
    receiver.secrets("silent", &[&silent_secret]);
    let (status, _) = admin
        .call(
            Method::PUT,
            "/policy",
            Some(json!({"block_legacy_keys": true})),
        )
        .await;
    assert_eq!(status, 200);

    let rows = wait_deliveries(&admin, &flaky, |rows| {
        rows.first().is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    let row = &rows[0];
    assert_eq!(
        (
            row["state"].as_str(),
            row["attempts"].as_i64(),
            row["last_status"].as_i64()
        ),
        (Some("delivered"), Some(4), Some(204)),
        "{row}"
    );
    let got = receiver.of("flaky");
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got
        .iter()
        .all(|r| r["id"] == got[0]["id"] && r["verified"] == true));
    // Waits of 200 ms × 4ⁿ, less a fifth of jitter at most.
    let at: Vec<f64> = got.iter().map(|r| r["at"].as_f64().unwrap()).collect();
    for (n, minimum) in [0.16, 0.64, 2.56].iter().enumerate() {
        let gap = at[n + 1] - at[n];
        assert!(
            gap >= *minimum,
            "wait {n}: {gap:.3} s, at least {minimum} s ({at:?})"
        );
    }

    let rows = wait_deliveries(&admin, &silent, |rows| {
        rows.first().is_some_and(|d| d["state"] == "failed")
    })
    .await;
    let row = &rows[0];
    assert_eq!(
        (row["state"].as_str(), row["attempts"].as_i64()),
        (Some("failed"), Some(4)),
        "{row}"
    );
    assert!(
        row["last_status"].is_null() && row["next_attempt_at"].is_null(),
        "{row}"
    );
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1000 ms"),
        "{row}"
    );
    assert_eq!(receiver.of("silent").len(), 4);

    // A retry tries once more now, and fails again with its attempts spent.
    let delivery = row["id"].as_str().unwrap();
    let (status, retried) = admin
        .post(
            &format!("/webhooks/{silent}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, retried["state"].as_str()),
        (200, Some("pending")),
        "{retried}"
    );
    let rows = wait_deliveries(&admin, &silent, |rows| {
        rows[0]["attempts"] == 5 && rows[0]["state"] == "failed"
    })
    .await;
    assert_eq!(
        (rows[0]["state"].as_str(), rows[0]["attempts"].as_i64()),
        (Some("failed"), Some(5))
    );
    let (status, refused) = admin
        .post(
            &format!(
                "/webhooks/{flaky}/deliveries/{}/retry",
                rows[0]["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("not_found")),
        "another endpoint's delivery"
    );
    let scrape = gw.scrape();
    assert!(
        metric(
            &scrape,
            "tollgate_webhook_deliveries_total{result=\"retry\"}"
        ) >= 6.0,
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "tollgate_webhook_deliveries_total{result=\"failed\"}"
        ) >= 2.0,
        "{scrape}"
    );
}

/// Loopback, private and link-local destinations are refused at registration, and at
/// delivery when a name resolves there; bad bodies get their codes.
#[tokio::test(flavor = "multi_thread")]
async fn private_destinations_are_refused_unless_allowed() {
    let up = upstream();
    let receiver = Receiver::start();
    let gw = Gateway::start(&config(&up, &Backend::Sqlite, false, None));
    let admin = Admin::of(&gw);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://localhost:9/hook",
    ] {
        let (status, body) = admin
            .post("/webhooks", json!({"url": url, "events": ["*"]}))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("destination_not_allowed")),
            "{url}: {body}"
        );
    }
    for (body, why) in [
        (
            json!({"url": "ftp://example.com/", "events": ["*"]}),
            "scheme",
        ),
        (
            json!({"url": "https://example.com/", "events": ["key.deleted"]}),
            "unknown type",
        ),
        (
            json!({"url": "https://example.com/", "events": []}),
            "no types",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "secret": "mine"}),
            "unknown field",
        ),
    ] {
        let (status, answer) = admin.post("/webhooks", body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{why}: {answer}"
        );
    }
    let (status, _) = admin.get("/webhooks/wh_nosuchendpoint").await;
    assert_eq!(status, 404);

    // An endpoint registered while its name resolved elsewhere, and that resolves to
    // loopback now: written to the store directly, as the registration check passed then.
    use sqlx::Connection;
    let url = format!("sqlite://{}/data/tollgate.db", gw.dir.path().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let target = format!("http://localhost:{}/ok/rebound", receiver.port);
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, events, description, disabled, secret, \
         created_at, updated_at) VALUES ('wh_rebound', $1, '[\"*\"]', '', 0, $2, 1, 1)",
    )
    .bind(&target)
    .bind(tollgate::events::signature::new_secret())
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    admin
        .create_key(json!({"name": "announced", "permissions": ["accounts:read"]}))
        .await;
    // `attempts` counts the claim; the outcome is written when the attempt ends.
    let rows = wait_deliveries(&admin, "wh_rebound", |rows| {
        rows.first().is_some_and(|d| d["last_error"].is_string())
    })
    .await;
    let error = rows[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("destination_not_allowed"), "{rows:?}");
    assert!(
        receiver.received().is_empty(),
        "nothing reached the address"
    );
    let scrape = scrape_until(
        &gw,
        "tollgate_webhook_deliveries_total{result=\"refused\"}",
        1.0,
    );
    assert!(
        metric(
            &scrape,
            "tollgate_webhook_deliveries_total{result=\"refused\"}"
        ) >= 1.0
    );
    // The CLI, through the same API.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("TOLLGATE_ADMIN_URL", format!("http://{}", gw.admin))
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = cli(&["webhooks", "create", "--url", "http://10.0.0.1/in"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("destination_not_allowed"), "{err}");
    let (code, out, err) = cli(&[
        "webhooks",
        "create",
        "--url",
        "https://hooks.example.com/in",
        "--events",
        "key.revoked,key.leaked",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("secret: whsec_") && out.contains("shown once"),
        "{out}"
    );
    let (_, out, _) = cli(&["webhooks", "list"]);
    assert!(
        out.contains("https://hooks.example.com/in") && out.contains("key.revoked,key.leaked"),
        "{out}"
    );
    let (_, listed, _) = cli(&["webhooks", "list", "--json"]);
    assert!(!listed.contains("whsec_"), "no secret in a listing");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let id = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["url"] == "https://hooks.example.com/in")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, _) = cli(&["webhooks", "test", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("queued evt_"), "{out}");
    let (_, out, _) = cli(&["webhooks", "deliveries", &id]);
    assert!(out.contains("webhook.test"), "{out}");
    let (_, out, _) = cli(&["events", "--limit", "500"]);
    assert!(
        out.contains("webhook.test") && out.contains("next: tollgate events --cursor"),
        "{out}"
    );
    let (code, _, _) = cli(&["webhooks", "delete", &id]);
    assert_eq!(code, Some(0));
    let (code, _, err) = cli(&["webhooks", "show", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not_found"), "{err}");
}

/// Two replicas on one PostgreSQL, the one holding the leases killed mid-delivery: every
/// event is delivered, each by one replica at a time, and a duplicate comes only after the
/// dead replica's lease ran out.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_delivery_loses_nothing_on_postgres() {
    use sqlx::{Connection, Row};
    let up = upstream();
    let receiver = Receiver::start();
    let backend = Backend::postgres();
    let Backend::Postgres(db) = &backend else {
        unreachable!()
    };
    let yaml = credentials_config(&up, &backend.url(), "live")
        + "webhooks: { allow_private_destinations: true, timeout: 5s, max_attempts: 4, retry_base: 200ms }\n";
    let mut replicas = [Gateway::start(&yaml), Gateway::start(&yaml)];
    let admin = Admin::of(&replicas[0]);
    // Paused while the events are made, so that the first replica to look claims them all.
    let (status, hook) = admin
        .post("/webhooks", json!({"url": receiver.url("slow", "slow"), "events": ["key.created"], "disabled": true}))
        .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap().to_string();
    receiver.secrets("slow", &[hook["secret"].as_str().unwrap()]);
    const EVENTS: usize = 20;
    for n in 0..EVENTS {
        admin
            .create_key(json!({"name": format!("replica-{n}"), "permissions": ["accounts:read"]}))
            .await;
    }
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/webhooks/{hook_id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);

    // Find the replica holding leases, by the process id its leases carry, and kill it
    // while its attempts are in flight (the receiver takes a second to answer).
    let mut db_conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        let row = sqlx::query(
            "SELECT lease_owner FROM webhook_deliveries WHERE lease_owner IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&mut db_conn)
        .await
        .unwrap();
        if let Some(row) = row {
            let owner: String = row.get(0);
            let pid: u32 = owner
                .trim_start_matches("pid")
                .split('_')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            break pid;
        }
        assert!(Instant::now() < deadline, "no replica claimed a delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    receiver
        .wait("slow", Duration::from_secs(10), |got| !got.is_empty())
        .await;
    let victim = replicas
        .iter()
        .position(|r| r.pid() == holder)
        .expect("a replica's pid");
    replicas[victim].kill();
    let survivor = &replicas[1 - victim];

    let got = receiver
        .wait("slow", Duration::from_secs(60), |got| {
            got.iter()
                .map(|r| r["id"].as_str())
                .collect::<BTreeSet<_>>()
                .len()
                == EVENTS
        })
        .await;
    let ids: BTreeSet<&str> = got.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), EVENTS, "every event delivered: {got:?}");
    assert!(got.iter().all(|r| r["verified"] == true));
    // Duplicates only after the lease (timeout 5 s + 10 s) ran out, never side by side.
    let mut duplicates = 0;
    for id in &ids {
        let mut at: Vec<f64> = got
            .iter()
            .filter(|r| r["id"].as_str() == Some(id))
            .map(|r| r["at"].as_f64().unwrap())
            .collect();
        at.sort_by(f64::total_cmp);
        for pair in at.windows(2) {
            duplicates += 1;
            assert!(
                pair[1] - pair[0] >= 14.0,
                "{id} delivered twice {:.1} s apart",
                pair[1] - pair[0]
            );
        }
    }
    println!("{EVENTS} events, {} arrivals, {duplicates} duplicates after the dead replica's leases ran out", got.len());
    let admin = Admin::of(survivor);
    let rows = wait_deliveries(&admin, &hook_id, |rows| {
        rows.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(rows.len(), EVENTS);
    assert!(rows.iter().all(|d| d["state"] == "delivered"), "{rows:?}");
    db_conn.close().await.unwrap();
}
