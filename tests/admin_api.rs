//! The admin API's contract: operator auth, strict bodies, pagination, idempotency, the
//! OpenAPI document, the CLI, and bad input answered with codes and no secret anywhere.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::process::Command;

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&credentials_config(
        up,
        "sqlite://{dir}/data/tollgate.db",
        "live",
    ))
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_operator_token_opens_the_admin_api() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (_, secret) = admin
        .create_key(json!({"name": "data-plane", "permissions": ["accounts:read"]}))
        .await;
    let http = reqwest::Client::new();
    for token in [None, Some("wrong"), Some(secret.as_str())] {
        let mut request = http.get(gw.admin_url("/admin/v1/keys"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(code(&body), "unauthorized");
    }
    // A data-plane key sent as X-API-Key is no operator credential either.
    let response = http
        .get(gw.admin_url("/admin/v1/keys"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(code(&body), "unauthorized");
    assert!(!body.to_string().contains(&secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_its_code_and_never_a_5xx_or_a_leaked_secret_on_sqlite() {
    bad_input(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_its_code_and_never_a_5xx_or_a_leaked_secret_on_postgres() {
    bad_input(Backend::postgres()).await;
}

async fn bad_input(backend: Backend) {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let (id, secret) = admin
        .create_key(json!({"name": "canary", "permissions": ["accounts:read"]}))
        .await;
    let cases = [
        (
            json!({"name": "x", "permissions": ["accounts:read"], "ip_allowlist": ["10.0.0.0/33"]}),
            "invalid_cidr",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "ip_allowlist": ["not-an-ip"]}),
            "invalid_cidr",
        ),
        (
            json!({"name": "x", "permissions": ["acounts:read"]}),
            "unknown_permission",
        ),
        (json!({"name": "x"}), "permission_required"),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "id": "key_mine"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "digest": "00"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "created_at": "2020-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "colour": "red"}),
            "invalid_request",
        ),
        (
            json!({"name": 42, "permissions": ["accounts:read"]}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": "accounts:read"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "expires_at": "soon"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "type": "legacy", "role": "nobody"}),
            "invalid_request",
        ),
        (json!({"name": "x", "preset": "nope"}), "invalid_request"),
        (json!([1, 2, 3]), "invalid_request"),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "start": "tg_live_mine"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "key": "tg_live_mine"}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "permissions": ["accounts:read"], "revoked_at": null}),
            "invalid_request",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = admin.post("/keys", body.clone()).await;
        let expected_status = match expected {
            "legacy_keys_blocked" => 403,
            _ => 400,
        };
        assert_eq!(
            (status, code(&answer)),
            (expected_status, expected),
            "{body} -> {answer}"
        );
    }
    // Server-set fields cannot be written through PATCH, nor on apps and users.
    for field in [
        "id",
        "digest",
        "created_at",
        "start",
        "client_id",
        "revoked_at",
    ] {
        let (status, answer) = admin
            .call(
                Method::PATCH,
                &format!("/keys/{id}"),
                Some(json!({ field: "x" })),
            )
            .await;
        assert_eq!((status, code(&answer)), (400, "invalid_request"), "{field}");
    }
    for (path, body) in [
        (
            "/clients",
            json!({"name": "a", "type": "public", "redirect_uris": ["https://a.example/cb"], "client_id": "mine"}),
        ),
        (
            "/clients",
            json!({"name": "a", "type": "confidential", "redirect_uris": ["https://a.example/cb"], "client_secret": "mine"}),
        ),
        (
            "/users",
            json!({"username": "u", "password": "correct horse battery", "password_hash": "$argon2id$x"}),
        ),
    ] {
        let (status, answer) = admin.post(path, body.clone()).await;
        assert_eq!((status, code(&answer)), (400, "invalid_request"), "{body}");
    }
    let (_, shown) = admin.get(&format!("/keys/{id}")).await;
    assert_eq!(shown["id"], id.as_str());
    let not_json = reqwest::Client::new()
        .post(gw.admin_url("/admin/v1/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let (status, answer) = admin
        .call(
            Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"expires_at": "2030-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "expiry_immutable"));
    let (status, answer) = admin
        .call(
            Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"type": "legacy"})),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "invalid_request"));
    let (status, answer) = admin.get("/keys/key_nope").await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
    let (status, answer) = admin.get("/keys?limit=501").await;
    assert_eq!((status, code(&answer)), (400, "invalid_request"));
    let (status, answer) = admin.get("/keys?cursor=%%%").await;
    assert_eq!((status, code(&answer)), (400, "invalid_request"));

    // The data plane: garbage, bad checksums, both headers, huge headers.
    let http = reqwest::Client::new();
    let url = gw.url("/v1/accounts");
    let mut bad_checksum = secret.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'a' {
        b'b'
    } else {
        b'a'
    };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let garbage = [
        "",
        "x",
        "tg_live_",
        "tg_live_!!!!",
        "tg_prod_0123456789012345678901234567890123456",
        &bad_checksum,
    ];
    for key in garbage {
        let response = http
            .get(&url)
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{key}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(code(&body), "invalid_api_key", "{key}");
    }
    let both = http
        .get(&url)
        .header("X-API-Key", &secret)
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let basic = http
        .get(&url)
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 400);
    let huge = raw(
        gw.addr,
        format!(
            "GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(huge.status, 431);
    // A JWT-shaped bearer is not a key: invalid_token, with the RFC 6750 challenge.
    let token = http
        .get(&url)
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 401);
    assert!(token.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));

    // No secret anywhere the gateway writes.
    let logs = format!("{}{}", gw.stderr(), gw.stdout());
    assert!(!logs.contains(&secret), "a secret reached the logs");
    assert!(!gw.scrape().contains(&secret));
    assert!(!logs.contains(&bad_checksum));
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_with_opaque_cursors() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            admin
                .create_key(json!({"name": format!("k{i}"), "permissions": ["accounts:read"]}))
                .await
                .0,
        );
    }
    let mut seen = Vec::new();
    let mut path = "/keys?limit=2".to_string();
    loop {
        let (status, page) = admin.get(&path).await;
        assert_eq!(status, 200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|k| k["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/keys?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
    let (_, audit) = admin.get("/audit?limit=2").await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 2);
    assert!(audit["next_cursor"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_replay_the_first_answer_without_the_secret() {
    let up = upstream();
    let gw = gateway(&up);
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, key: &'static str| {
        http.post(gw.admin_url("/admin/v1/keys"))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"name": "once", "permissions": ["accounts:read"]});
    let first = post(body.clone(), "create-once-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    assert!(first["key"].is_string());
    let replay = post(body.clone(), "create-once-1").await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert!(replay.get("key").is_none(), "the secret is shown once");
    let (_, keys) = Admin::of(&gw).get("/keys").await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    let other = post(
        json!({"name": "twice", "permissions": ["accounts:read"]}),
        "create-once-1",
    )
    .await
    .unwrap();
    assert_eq!(other.status(), 422);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_eq!(code(&other), "idempotency_key_reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_in_the_openapi_document_answers() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (id, _) = admin
        .create_key(json!({"name": "doc", "permissions": ["accounts:read"]}))
        .await;
    let (_, app) = admin
        .post("/clients", json!({"name": "doc", "type": "public", "redirect_uris": ["https://app.test/cb"], "scopes": ["accounts:read"]}))
        .await;
    let (_, user) = admin
        .post(
            "/users",
            json!({"username": "doc", "password": "a long enough password"}),
        )
        .await;
    let (_, operator) = admin
        .post(
            "/operators",
            json!({"email": "doc@example.com", "name": "Doc", "password": "a long enough password", "role": "viewer"}),
        )
        .await;
    let (_, token) = admin
        .post("/tokens", json!({"name": "doc", "role": "viewer"}))
        .await;
    // A public address, so registration accepts it; nothing listens there and no test waits
    // for its deliveries.
    let hook = json!({"url": "https://203.0.113.7/hook", "events": ["key.created"]});
    let (_, webhook) = admin.post("/webhooks", hook.clone()).await;
    let (_, doomed) = admin.post("/webhooks", hook.clone()).await;
    let webhook = webhook["id"].as_str().unwrap().to_string();
    let (_, owner) = admin.post("/owners", json!({"name": "doc"})).await;
    let owner = owner["id"].as_str().unwrap().to_string();
    let doomed = doomed["id"].as_str().unwrap().to_string();
    let (status, _) = admin
        .post(&format!("/webhooks/{webhook}/test"), json!({}))
        .await;
    assert_eq!(status, 202);
    let (_, deliveries) = admin.get(&format!("/webhooks/{webhook}/deliveries")).await;
    let delivery = deliveries["data"][0]["id"].as_str().unwrap().to_string();
    let document: serde_json::Value = reqwest::get(gw.admin_url("/admin/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, _) in item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(m, _)| *m != "parameters")
        {
            let method: Method = method.to_uppercase().parse().unwrap();
            let target = if path.starts_with("/clients") {
                app["client_id"].as_str().unwrap()
            } else if path.starts_with("/users") {
                user["id"].as_str().unwrap()
            } else if path.starts_with("/operators") {
                operator["id"].as_str().unwrap()
            } else if path.starts_with("/tokens") {
                token["id"].as_str().unwrap()
            } else if path == "/webhooks/{id}" && method == Method::DELETE {
                // Sorted paths put DELETE before GET and PATCH: delete another endpoint.
                doomed.as_str()
            } else if path.starts_with("/webhooks") {
                webhook.as_str()
            } else if path.starts_with("/owners") {
                owner.as_str()
            } else {
                id.as_str()
            };
            let concrete = path
                .replace("{id}", target)
                .replace("{delivery_id}", &delivery);
            let body = match (method.as_str(), path.as_str()) {
                ("POST", "/keys") => {
                    Some(json!({"name": "doc2", "permissions": ["accounts:read"]}))
                }
                ("POST", "/clients") => Some(
                    json!({"name": "doc2", "type": "public", "redirect_uris": ["https://app.test/cb"], "scopes": ["accounts:read"]}),
                ),
                ("POST", "/users") => Some(
                    json!({"username": format!("doc{operations}"), "password": "a long enough password"}),
                ),
                ("POST", "/operators") => Some(
                    json!({"email": format!("doc{operations}@example.com"), "name": "Doc", "password": "a long enough password", "role": "viewer"}),
                ),
                ("POST", "/webhooks") => Some(hook.clone()),
                ("POST", p) if p.ends_with("/credits") => Some(json!({"op": "set", "amount": 100})),
                ("POST", "/owners") => Some(json!({"name": format!("owner {operations}")})),
                ("POST", "/tokens") => Some(json!({"name": "doc2", "permissions": ["keys:read"]})),
                ("POST", "/session") => {
                    Some(json!({"email": "doc@example.com", "password": "a long enough password"}))
                }
                ("PATCH", p) if p.starts_with("/users") => Some(json!({"disabled": false})),
                ("PATCH", p) if p.starts_with("/webhooks") => {
                    Some(json!({"description": "renamed"}))
                }
                ("PATCH", p) if p.starts_with("/owners") => Some(json!({"name": "renamed"})),
                ("PATCH", _) => Some(json!({"name": "renamed"})),
                ("PUT", _) => Some(json!({"block_legacy_keys": false})),
                ("POST", _) => Some(json!({})),
                _ => None,
            };
            let (status, answer) = admin.call(method.clone(), &concrete, body).await;
            // Revoking or deleting first makes later calls on the same record answer 409; a
            // token has no session to sign out of.
            let expected = status < 300
                || status == 409
                || (path == "/session" && method == Method::DELETE && status == 400);
            assert!(expected, "{method} {path} -> {status} {answer}");
            operations += 1;
        }
    }
    assert!(operations >= 28, "{operations}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_metrics_count_decisions_and_credentials() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (_, secret) = admin
        .create_key(json!({"name": "m", "permissions": ["accounts:read"]}))
        .await;
    let http = reqwest::Client::new();
    http.get(gw.url("/v1/accounts"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    http.get(gw.url("/v1/accounts"))
        .header("X-API-Key", "tg_live_garbage")
        .send()
        .await
        .unwrap();
    http.get(gw.url("/v1/accounts")).send().await.unwrap();
    let scrape = gw.scrape();
    assert_eq!(
        metric(
            &scrape,
            "tollgate_auth_decisions_total{method=\"api_key\",outcome=\"allowed\"}"
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            "tollgate_auth_decisions_total{method=\"api_key\",outcome=\"invalid_api_key\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &scrape,
            "tollgate_auth_decisions_total{method=\"anonymous\",outcome=\"missing_credentials\"}"
        ),
        1.0
    );
    assert_eq!(metric(&scrape, "tollgate_auth_duration_seconds_count"), 3.0);
    assert_eq!(metric(&scrape, "tollgate_store_up"), 1.0);
    assert!(scrape.contains("tollgate_snapshot_age_seconds"));
    // The credential gauge follows within a sync interval.
    let gauge = "tollgate_credentials{type=\"fine_grained\"}";
    assert_eq!(metric(&scrape_until(&gw, gauge, 1.0), gauge), 1.0);
}

fn cli(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("TOLLGATE_ADMIN_URL", format!("http://{}", gw.admin))
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_the_key_lifecycle() {
    let up = upstream();
    let gw = gateway(&up);
    let (code, out, err) = cli(
        &gw,
        &[
            "keys",
            "create",
            "--name",
            "cli-key",
            "--permission",
            "accounts:read",
            "--ip",
            "127.0.0.1",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap();
    let secret = created["key"].as_str().unwrap();

    let (code, out, _) = cli(&gw, &["keys", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID "), "{out}");
    assert!(out.contains("cli-key") && out.contains("accounts:read") && out.contains("active"));
    assert!(!out.contains(secret));

    let (code, out, _) = cli(&gw, &["keys", "show", id]);
    assert_eq!(code, 0);
    assert!(out.contains("127.0.0.1/32"));

    let (code, out, _) = cli(&gw, &["keys", "rotate", id]);
    assert_eq!(code, 0);
    assert!(out.contains("This secret is shown once"));
    let (code, out, _) = cli(&gw, &["keys", "usage", id]);
    assert_eq!(code, 0);
    assert!(out.contains("last used"));
    let (code, out, _) = cli(&gw, &["keys", "revoke", id]);
    assert_eq!(code, 0);
    assert!(out.contains("revoked_at"));
    let (code, _, err) = cli(&gw, &["keys", "revoke", id]);
    assert_eq!(code, 1);
    assert!(err.contains("already_revoked"), "{err}");

    let (code, out, _) = cli(&gw, &["policy", "set", "--max-key-lifetime", "90d"]);
    assert_eq!(code, 0);
    assert!(out.contains("90d"));
    let (code, out, _) = cli(&gw, &["policy", "show", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["max_key_lifetime"],
        "90d"
    );
    let (code, _, err) = cli(
        &gw,
        &[
            "keys",
            "create",
            "--name",
            "n",
            "--permission",
            "accounts:read",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("expiry_required"));
    let (code, _, _) = cli(&gw, &["keys", "frobnicate"]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_level_refusals_keep_the_error_shape() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (id, _) = admin
        .create_key(json!({"name": "r", "permissions": ["accounts:read"]}))
        .await;
    // Revocation takes no fields.
    let (status, body) = admin
        .post(&format!("/keys/{id}/revoke"), json!({"reason": "x"}))
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    // An oversized body and a wrong method answer in the error shape, not axum's text.
    let big = json!({"name": "x".repeat(70 * 1024), "permissions": ["accounts:read"]});
    let (status, body) = admin.post("/keys", big).await;
    assert_eq!((status, code(&body)), (413, "body_too_large"));
    let (status, body) = admin.call(Method::PUT, "/keys", Some(json!({}))).await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
    // The key was not revoked by the refused call.
    let (_, shown) = admin.get(&format!("/keys/{id}")).await;
    assert!(shown["revoked_at"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_store_write_never_answers_2xx_on_sqlite() {
    failed_store_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_store_write_never_answers_2xx_on_postgres() {
    failed_store_write(Backend::postgres()).await;
}

/// With the store held locked by someone else, writes cannot commit: each answers
/// 503 store_unavailable, and nothing of them appears once the store is free again.
async fn failed_store_write(backend: Backend) {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(&up, &backend.url(), "live"));
    let admin = Admin::of(&gw);
    let (id, secret) = admin
        .create_key(json!({"name": "before", "permissions": ["accounts:read"]}))
        .await;
    let lock = StoreLock::take_writes(&backend, gw.dir.path()).await;
    let (status, answer) = admin
        .post(
            "/keys",
            json!({"name": "during", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!((status, code(&answer)), (503, "store_unavailable"));
    assert!(answer.get("key").is_none());
    let (status, answer) = admin.post(&format!("/keys/{id}/revoke"), json!({})).await;
    assert_eq!((status, code(&answer)), (503, "store_unavailable"));
    lock.release().await;
    let (_, listed) = admin.get("/keys").await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["before"], "nothing of the failed writes was kept");
    let (_, shown) = admin.get(&format!("/keys/{id}")).await;
    assert!(shown["revoked_at"].is_null());
    // The key still works, and writes go through again.
    let response = reqwest::Client::new()
        .get(gw.url("/v1/accounts"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = admin
        .post(
            "/keys",
            json!({"name": "after", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_to_one_record_all_commit() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    // Many operators changing the policy at once: each write reads, decides and commits
    // only if nobody wrote in between, retrying until it does.
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..24 {
        let admin = Admin::of(&gw);
        let body =
            json!({"block_legacy_keys": i % 2 == 0, "max_key_lifetime": format!("{}d", 30 + i)});
        writes.spawn(async move { admin.call(Method::PUT, "/policy", Some(body)).await });
    }
    for (status, body) in writes.join_all().await {
        assert_eq!(status, 200, "{body}");
    }
    let (_, audit) = admin.get("/audit?limit=100").await;
    let updates = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "policy.update")
        .count();
    assert_eq!(updates, 24, "every write is kept and audited");

    let (status, user) = admin
        .post(
            "/users",
            json!({"username": "ada", "password": "a long passphrase"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let mut patches = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (admin, path) = (Admin::of(&gw), path.clone());
        let body = json!({"disabled": i % 2 == 1});
        patches.spawn(async move { admin.call(Method::PATCH, &path, Some(body)).await });
    }
    for (status, body) in patches.join_all().await {
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_newest_first_and_filter_by_what_they_show() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let soon = tollgate::clock::rfc3339(tollgate::clock::now_ms() + 2 * 86_400_000);
    let later = tollgate::clock::rfc3339(tollgate::clock::now_ms() + 30 * 86_400_000);
    let (active, _) = admin
        .create_key(
            json!({"name": "active", "permissions": ["accounts:read"], "expires_at": later}),
        )
        .await;
    let (expiring, _) = admin
        .create_key(
            json!({"name": "expiring", "permissions": ["accounts:read"], "expires_at": soon}),
        )
        .await;
    let (revoked, _) = admin
        .create_key(json!({"name": "revoked", "permissions": ["accounts:read"]}))
        .await;
    admin
        .post(&format!("/keys/{revoked}/revoke"), json!({}))
        .await;
    let (legacy, _) = admin
        .create_key(json!({"name": "legacy", "type": "legacy", "role": "workbench"}))
        .await;
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                item["id"]
                    .as_str()
                    .or(item["client_id"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    // Newest first, page by page.
    let mut seen = Vec::new();
    let mut path = "/keys?limit=3".to_string();
    loop {
        let (status, page) = admin.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/keys?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [&legacy, &revoked, &expiring, &active].map(|s| s.to_string())
    );
    for (query, expected) in [
        ("status=active", vec![&legacy, &active]),
        ("status=expiring", vec![&expiring]),
        ("status=revoked", vec![&revoked]),
        ("status=expired", vec![]),
        ("type=legacy", vec![&legacy]),
        ("type=fine_grained&status=active", vec![&active]),
    ] {
        let (status, page) = admin.get(&format!("/keys?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&page), expected, "{query}");
    }
    // An unknown or repeated query parameter is refused, as an unknown body field is.
    for (path, words) in [
        ("/keys?stauts=active", "\"stauts\""),
        ("/keys?limit=1&limit=2", "twice"),
        ("/keys?status=sleeping", "status must be"),
        ("/audit?from=yesterday", "RFC 3339"),
        (&*format!("/keys/{active}?verbose=1"), "no query parameters"),
    ] {
        let (status, error) = admin.get(path).await;
        assert_eq!(
            (status, error["error"]["code"].as_str().unwrap()),
            (400, "invalid_request"),
            "{path}"
        );
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{path}: {message}");
    }
    // The audit log by action, target, actor and time.
    let (_, audit) = admin
        .get(&format!("/audit?action=key.revoke&target={revoked}"))
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    let (_, audit) = admin.get("/audit?action=key.create&actor=bootstrap").await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 4, "{audit}");
    let future = tollgate::clock::rfc3339(tollgate::clock::now_ms() + 60_000);
    let (_, audit) = admin.get(&format!("/audit?from={future}")).await;
    assert!(audit["data"].as_array().unwrap().is_empty(), "{audit}");
    let (_, audit) = admin.get(&format!("/audit?to={future}&limit=2")).await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 2);
    assert!(audit["next_cursor"].is_string());

    // Apps and users: newest first too, and paged.
    let mut apps = Vec::new();
    for name in ["one", "two", "three"] {
        let (_, app) = admin
            .post("/clients", json!({"name": name, "type": "public", "redirect_uris": ["http://127.0.0.1:9/cb"], "scopes": ["accounts:read"]}))
            .await;
        apps.push(app["client_id"].as_str().unwrap().to_string());
    }
    let (_, first) = admin.get("/clients?limit=2").await;
    let (_, rest) = admin
        .get(&format!(
            "/clients?limit=2&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await;
    let listed: Vec<String> = ids(&first).into_iter().chain(ids(&rest)).collect();
    apps.reverse();
    assert_eq!(listed, apps);
    for name in ["ada", "grace"] {
        admin
            .post(
                "/users",
                json!({"username": name, "password": "correct horse battery"}),
            )
            .await;
    }
    let (_, users) = admin.get("/users?limit=1").await;
    assert_eq!(users["data"][0]["username"], "grace");
    assert!(users["next_cursor"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistake_in_a_body_names_its_field() {
    let up = upstream();
    let gw = gateway(&up);
    let admin = Admin::of(&gw);
    let (id, _) = admin
        .create_key(json!({"name": "k", "permissions": ["accounts:read"]}))
        .await;
    let (_, user) = admin
        .post(
            "/users",
            json!({"username": "ada", "password": "correct horse battery"}),
        )
        .await;
    let user_path = format!("/users/{}", user["id"].as_str().unwrap());
    for (method, path, body, words, absent) in [
        (
            Method::POST,
            "/keys".to_string(),
            json!({"name": "x", "permissions": "accounts:read"}),
            "permissions: invalid type",
            "",
        ),
        (
            Method::PATCH,
            format!("/keys/{id}"),
            json!({"allow_infrastructure_ips": "yes"}),
            "allow_infrastructure_ips: invalid type",
            "",
        ),
        (
            Method::PATCH,
            format!("/keys/{id}"),
            json!({"nmae": "x"}),
            "unknown field `nmae`",
            "expires_at",
        ),
        (
            Method::PATCH,
            format!("/keys/{id}"),
            json!({"name": null}),
            "name: invalid type: null",
            "",
        ),
        (
            Method::PATCH,
            user_path.clone(),
            json!({"disabled": null}),
            "disabled: invalid type: null",
            "",
        ),
        (
            Method::PUT,
            "/policy".to_string(),
            json!({"block_legacy_keys": null}),
            "block_legacy_keys: invalid type: null",
            "",
        ),
    ] {
        let (status, error) = admin.call(method.clone(), &path, Some(body.clone())).await;
        assert_eq!(
            (status, error["error"]["code"].as_str().unwrap_or_default()),
            (400, "invalid_request"),
            "{method} {path} {body}: {error}"
        );
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{body}: {message}");
        assert!(
            absent.is_empty() || !message.contains(absent),
            "{body}: {message}"
        );
    }
    // A PUT without a body says nothing: refused, and the policy unchanged.
    let (status, error) = admin.call(Method::PUT, "/policy", None).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // A second delete of an app says the app is deleted, not that a key is revoked.
    let (_, app) = admin
        .post("/clients", json!({"name": "gone", "type": "public", "redirect_uris": ["http://127.0.0.1:9/cb"], "scopes": ["accounts:read"]}))
        .await;
    let path = format!("/clients/{}", app["client_id"].as_str().unwrap());
    assert_eq!(admin.call(Method::DELETE, &path, None).await.0, 200);
    let (status, again) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 409);
    let message = again["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("app was already deleted") && !message.contains("key"),
        "{message}"
    );
    // A replayed refusal keeps the whole error shape, with a request id.
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let response = http
            .post(gw.admin_url("/admin/v1/clients"))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "not-json-1")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert!(response.headers().contains_key("x-request-id"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"]["request_id"].is_string(), "{body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }
}

fn cli_in(gw: &Gateway, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("TOLLGATE_ADMIN_URL", format!("http://{}", gw.admin))
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_USER_PASSWORD")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_covers_everyday_work_without_curl() {
    let up = upstream();
    let gw = gateway(&up);
    let token = ["--admin-token", ADMIN_TOKEN];
    // --admin-token, without the variable.
    let (code, out, err) = cli_in(
        &gw,
        &[
            "keys",
            "create",
            "--name",
            "cli",
            "--permission",
            "accounts:read",
            "--idempotency-key",
            "cli-1",
            "--json",
        ],
        "",
        &[("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    // The same create again: the key once, and the CLI says why there is no secret.
    let (code, out, err) = cli_in(
        &gw,
        &[
            "keys",
            "create",
            "--name",
            "cli",
            "--permission",
            "accounts:read",
            "--idempotency-key",
            "cli-1",
            token[0],
            token[1],
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("replayed: the secret was shown on the first response"),
        "{out}"
    );
    assert!(!out.contains(created["key"].as_str().unwrap()));

    let (code, out, err) = cli_in(
        &gw,
        &[
            "keys",
            "update",
            &id,
            "--name",
            "renamed",
            "--permission",
            "accounts:write",
            "--ip",
            "127.0.0.1",
            "--allow-infrastructure-ips",
            "true",
            "--rate-limit",
            "10/100",
            "--metadata",
            "team=payments",
            token[0],
            token[1],
            "--json",
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let updated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["permissions"], json!(["accounts:write"]));
    assert_eq!(updated["ip_allowlist"], json!(["127.0.0.1/32"]));
    assert_eq!(updated["allow_infrastructure_ips"], true);
    assert_eq!(
        updated["rate_limit"],
        json!({"per_minute": 10, "per_day": 100})
    );
    assert_eq!(updated["metadata"], json!({"team": "payments"}));
    let (code, out, _) = cli_in(&gw, &["keys", "show", &id, token[0], token[1]], "", &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("the ip_allowlist and the infrastructure_ips"),
        "{out}"
    );
    let (code, out, err) = cli_in(
        &gw,
        &[
            "keys",
            "rotate",
            &id,
            "--ip",
            "127.0.0.2",
            "--ip",
            "10.1.0.0/16",
            token[0],
            token[1],
            "--json",
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let rotated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rotated["ip_allowlist"],
        json!(["127.0.0.2/32", "10.1.0.0/16"])
    );
    let (code, out, _) = cli_in(
        &gw,
        &[
            "keys",
            "list",
            "--status",
            "active",
            "--type",
            "fine_grained",
            token[0],
            token[1],
        ],
        "",
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("renamed"), "{out}");

    // Users: created, disabled, enabled, a new password from stdin (never argv).
    let (code, out, err) = cli_in(
        &gw,
        &[
            "users",
            "create",
            "--username",
            "ada",
            token[0],
            token[1],
            "--json",
        ],
        "correct horse battery\n",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let user: serde_json::Value = serde_json::from_str(&out).unwrap();
    let user_id = user["id"].as_str().unwrap();
    for (verb, disabled) in [("disable", true), ("enable", false)] {
        let (code, out, err) = cli_in(
            &gw,
            &["users", verb, user_id, token[0], token[1], "--json"],
            "",
            &[],
        );
        assert_eq!(code, 0, "{err}");
        let changed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(changed["disabled"], disabled);
    }
    let (code, out, err) = cli_in(
        &gw,
        &[
            "users",
            "update",
            user_id,
            "--password",
            token[0],
            token[1],
            "--json",
        ],
        "another long passphrase\n",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let changed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(changed["password_changed_at"].is_string(), "{changed}");
    let (code, out, _) = cli_in(
        &gw,
        &["users", "list", "--limit", "1", token[0], token[1]],
        "",
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("ada"));
    let (code, out, _) = cli_in(
        &gw,
        &["clients", "list", "--limit", "1", token[0], token[1]],
        "",
        &[],
    );
    assert_eq!(code, 0, "{out}");

    // The audit log, filtered.
    let (code, out, err) = cli_in(
        &gw,
        &[
            "audit", "list", "--target", &id, "--since", "1h", token[0], token[1],
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("AT "), "{out}");
    for action in ["key.create", "key.update", "key.rotate"] {
        assert!(out.contains(action), "{action}: {out}");
    }
    assert!(
        out.contains("name") && out.contains("permissions"),
        "what changed is shown: {out}"
    );
    let (code, out, _) = cli_in(
        &gw,
        &[
            "audit",
            "list",
            "--action",
            "user.update",
            token[0],
            token[1],
            "--json",
        ],
        "",
        &[],
    );
    assert_eq!(code, 0);
    let entries: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(entries["data"].as_array().unwrap().len(), 3);

    // With --json, errors are JSON on stderr too.
    let (code, _, err) = cli_in(
        &gw,
        &["keys", "show", "key_nope", token[0], token[1], "--json"],
        "",
        &[],
    );
    assert_eq!(code, 1);
    let error: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(error["error"]["code"], "not_found");
    assert_eq!(error["error"]["status"], 404);
    let (code, _, err) = cli_in(&gw, &["keys", "list"], "", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("TOLLGATE_ADMIN_TOKEN") && err.contains("--admin-token"),
        "{err}"
    );

    // --help names the variable, never its value.
    let (_, help, _) = cli_in(
        &gw,
        &["keys", "list", "--help"],
        "",
        &[("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert!(help.contains("TOLLGATE_ADMIN_TOKEN"), "{help}");
    assert!(!help.contains(ADMIN_TOKEN), "{help}");
}
