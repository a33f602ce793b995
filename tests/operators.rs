//! The workbench's permissions end to end: every admin endpoint per role, the last owner,
//! escalation, admin tokens, console sessions with CSRF, sign-in throttling and its timing,
//! revocation on every replica, and no secret anywhere it should not be.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tollgate::admin::endpoint::Access;
use tollgate::admin::endpoints::ENDPOINTS;
use tollgate::admin_access::built_in_role;

/// The credential tests' config, with a custom role.
fn config(up: &Upstream, store: &str) -> String {
    credentials_config(up, store, "live").replace(
        "admin: { listen: \"{admin}\" }",
        "admin:\n  listen: \"{admin}\"\n  roles:\n    support: [keys:read, analytics:read]\n    hiring: [operators:read, operators:write, keys:read, analytics:read]",
    )
}

/// An admin API client with a credential of its own.
struct As {
    base: String,
    http: reqwest::Client,
    bearer: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl As {
    fn token(gw: &Gateway, token: &str) -> As {
        As {
            base: format!("http://{}/admin/v1", gw.admin),
            http: reqwest::Client::new(),
            bearer: Some(token.into()),
            cookie: None,
            csrf: None,
        }
    }

    fn nobody(gw: &Gateway) -> As {
        As {
            bearer: None,
            ..As::token(gw, "")
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let response = self.send(method, path, body, self.csrf.as_deref()).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("tollgate_session={cookie}"));
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

/// Signs in; the session's client, or the refusal.
async fn sign_in(
    gw: &Gateway,
    email: &str,
    password: &str,
) -> Result<As, (u16, Value, Option<String>)> {
    let response = reqwest::Client::new()
        .post(gw.admin_url("/admin/v1/session"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err((status, body, retry));
    }
    let cookie = cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("tollgate_session=")
        .unwrap()
        .to_string();
    Ok(As {
        bearer: None,
        cookie: Some(session),
        csrf: body["csrf_token"].as_str().map(str::to_string),
        ..As::nobody(gw)
    })
}

async fn operator(admin: &Admin, email: &str, role: &str) -> Value {
    let (status, made) = admin
        .post(
            "/operators",
            json!({"email": email, "name": email.split('@').next().unwrap(), "password": "correct horse battery", "role": role}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    made
}

async fn token(admin: &Admin, body: Value) -> (String, String) {
    let (status, made) = admin.post("/tokens", body).await;
    assert_eq!(status, 201, "{made}");
    (
        made["id"].as_str().unwrap().to_string(),
        made["token"].as_str().unwrap().to_string(),
    )
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_is_checked_per_role() {
    let up = upstream();
    let gw = Gateway::start(&config(&up, "sqlite://{dir}/data/tollgate.db"));
    let admin = Admin::of(&gw);
    for role in ["owner", "key_manager", "viewer", "auditor", "support"] {
        let (_, secret) = token(&admin, json!({"name": role, "role": role})).await;
        let caller = As::token(&gw, &secret);
        let (_, me) = caller.call(Method::GET, "/me", None).await;
        let held: Vec<String> = serde_json::from_value(me["permissions"].clone()).unwrap();
        if let Some(built_in) = built_in_role(role) {
            assert_eq!(held, built_in.names(), "{role}");
        } else {
            assert_eq!(held, ["keys:read", "analytics:read"]);
        }
        for endpoint in ENDPOINTS {
            let Access::Needs(permission) = endpoint.access else {
                continue;
            };
            let method: Method = endpoint.method.parse().unwrap();
            let path = endpoint.path.replace("{id}", "nope_0");
            let body = (method != Method::GET).then(|| json!({}));
            let (status, answer) = caller.call(method, &path, body).await;
            let label = format!("{role}: {} {}", endpoint.method, endpoint.path);
            if held.iter().any(|p| p == permission.as_str()) {
                assert!(
                    status != 401 && code(&answer) != "forbidden",
                    "{label} -> {status} {answer}"
                );
                assert!(status < 500, "{label} -> {status} {answer}");
            } else {
                assert_eq!(
                    (status, code(&answer)),
                    (403, "forbidden"),
                    "{label}: {answer}"
                );
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(message.contains(permission.as_str()), "{label}: {message}");
            }
        }
    }
    // No credential, or a data-plane key, is 401 everywhere but the two open endpoints.
    let (_, key) = admin
        .create_key(json!({"name": "k", "permissions": ["accounts:read"]}))
        .await;
    for caller in [As::nobody(&gw), As::token(&gw, &key)] {
        for endpoint in ENDPOINTS.iter().filter(|e| e.access != Access::Public) {
            let path = endpoint.path.replace("{id}", "nope_0");
            let (status, answer) = caller
                .call(endpoint.method.parse().unwrap(), &path, None)
                .await;
            assert_eq!(
                (status, code(&answer)),
                (401, "unauthorized"),
                "{}",
                endpoint.path
            );
        }
    }
    // The table and the document agree.
    let (_, document) = admin.get("/openapi.json").await;
    for endpoint in ENDPOINTS {
        let operation = &document["paths"][endpoint.path][endpoint.method.to_lowercase()];
        assert_eq!(
            operation["x-required-permission"],
            endpoint.permission_label(),
            "{} {}",
            endpoint.method,
            endpoint.path
        );
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["sessionCookie"]["name"], "tollgate_session");
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_stay_and_nobody_grants_more_than_they_hold() {
    let up = upstream();
    let gw = Gateway::start(&config(&up, "sqlite://{dir}/data/tollgate.db"));
    let admin = Admin::of(&gw);
    let first = operator(&admin, "first@example.com", "owner").await;
    let first_path = format!("/operators/{}", first["id"].as_str().unwrap());
    for change in [json!({"role": "viewer"}), json!({"disabled": true})] {
        let (status, answer) = admin.call(Method::PATCH, &first_path, Some(change)).await;
        assert_eq!((status, code(&answer)), (409, "last_owner"), "{answer}");
    }
    operator(&admin, "second@example.com", "owner").await;
    let (status, demoted) = admin
        .call(Method::PATCH, &first_path, Some(json!({"role": "viewer"})))
        .await;
    assert_eq!(status, 200, "{demoted}");

    // A token grants no more than it holds.
    let (_, limited) = token(
        &admin,
        json!({"name": "t", "permissions": ["tokens:write", "keys:read"]}),
    )
    .await;
    let limited = As::token(&gw, &limited);
    let (status, answer) = limited
        .call(
            Method::POST,
            "/tokens",
            Some(json!({"name": "more", "permissions": ["keys:write"]})),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (403, "permission_escalation"),
        "{answer}"
    );
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keys:write"));
    let (status, answer) = limited
        .call(
            Method::POST,
            "/tokens",
            Some(json!({"name": "owner", "role": "owner"})),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "permission_escalation"));
    let (status, answer) = limited
        .call(
            Method::POST,
            "/tokens",
            Some(json!({"name": "less", "permissions": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    // An operator of a hiring role can add operators holding no more than it holds, never
    // owners, and cannot change owners.
    operator(&admin, "hr@example.com", "hiring").await;
    let hr = sign_in(&gw, "hr@example.com", "correct horse battery")
        .await
        .unwrap();
    let (status, answer) = hr
        .call(Method::POST, "/operators", Some(json!({"email": "x@example.com", "name": "X", "password": "correct horse battery", "role": "owner"})))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (403, "permission_escalation"),
        "{answer}"
    );
    let (status, answer) = hr
        .call(Method::POST, "/operators", Some(json!({"email": "y@example.com", "name": "Y", "password": "correct horse battery", "role": "support"})))
        .await;
    assert_eq!(status, 201, "{answer}");
    let (_, listed) = admin.get("/operators?limit=500").await;
    let owner = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "owner")
        .unwrap();
    let (status, answer) = hr
        .call(
            Method::PATCH,
            &format!("/operators/{}", owner["id"].as_str().unwrap()),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (403, "permission_escalation"),
        "{answer}"
    );

    // New operators: a password of 12 characters or more, and one account per email.
    let (status, answer) = admin
        .post("/operators", json!({"email": "z@example.com", "name": "Z", "password": "too short", "role": "viewer"}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (400, "invalid_request"),
        "{answer}"
    );
    let (status, answer) = admin
        .post("/operators", json!({"email": "First@Example.COM", "name": "F", "password": "correct horse battery", "role": "viewer"}))
        .await;
    assert_eq!((status, code(&answer)), (409, "conflict"), "{answer}");
    let (status, answer) = admin
        .post("/operators", json!({"email": "w@example.com", "name": "W", "password": "correct horse battery", "role": "emperor"}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (400, "invalid_request"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_need_their_csrf_token_and_end_at_sign_out() {
    let up = upstream();
    let gw = Gateway::start(&config(&up, "sqlite://{dir}/data/tollgate.db"));
    let admin = Admin::of(&gw);
    let ada = operator(&admin, "ada@example.com", "key_manager").await;
    operator(&admin, "bob@example.com", "key_manager").await;
    let session = sign_in(&gw, "ADA@example.com", "correct horse battery")
        .await
        .unwrap();
    let other = sign_in(&gw, "bob@example.com", "correct horse battery")
        .await
        .unwrap();
    let (status, me) = session.call(Method::GET, "/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["kind"], "operator");
    assert_eq!(me["id"], ada["id"]);
    assert_eq!(me["role"], "key_manager");
    let key = json!({"name": "from-console", "permissions": ["accounts:read"]});
    // No CSRF token, another session's, and then its own.
    let refused = session
        .send(Method::POST, "/keys", Some(key.clone()), None)
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(code(&refused.json().await.unwrap()), "csrf_failed");
    let refused = session
        .send(
            Method::POST,
            "/keys",
            Some(key.clone()),
            other.csrf.as_deref(),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let (status, created) = session.call(Method::POST, "/keys", Some(key)).await;
    assert_eq!(status, 201, "{created}");
    // The change is the operator's, in the audit log.
    let (_, audit) = admin
        .get(&format!(
            "/audit?target={}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        audit["data"][0]["actor"],
        json!({"kind": "operator", "id": ada["id"], "name": "ada"})
    );
    let (_, signins) = admin.get("/audit?action=session.create").await;
    assert_eq!(signins["data"].as_array().unwrap().len(), 2);
    // Signed out, the session is over.
    let (status, _) = session.call(Method::DELETE, "/session", None).await;
    assert_eq!(status, 200);
    let (status, answer) = session.call(Method::GET, "/me", None).await;
    assert_eq!((status, code(&answer)), (401, "unauthorized"));
    // A new password ends the operator's other sessions.
    let again = sign_in(&gw, "ada@example.com", "correct horse battery")
        .await
        .unwrap();
    admin
        .call(
            Method::PATCH,
            &format!("/operators/{}", ada["id"].as_str().unwrap()),
            Some(json!({"password": "another horse battery"})),
        )
        .await;
    assert_eq!(again.call(Method::GET, "/me", None).await.0, 401);
    assert!(sign_in(&gw, "ada@example.com", "another horse battery")
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_throttled_per_email_and_costs_the_same_for_unknown_emails() {
    let up = upstream();
    let gw = Gateway::start(&config(&up, "sqlite://{dir}/data/tollgate.db"));
    let admin = Admin::of(&gw);
    operator(&admin, "eve@example.com", "viewer").await;
    for attempt in 1..=5 {
        let (status, body, _) = sign_in(&gw, "eve@example.com", "wrong password!")
            .await
            .err()
            .unwrap();
        assert_eq!(
            (status, code(&body)),
            (401, "invalid_credentials"),
            "attempt {attempt}"
        );
    }
    // The sixth is throttled, even with the right password, and says when to come back.
    let (status, body, retry) = sign_in(&gw, "Eve@Example.com", "correct horse battery")
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (429, "too_many_attempts"), "{body}");
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "{retry}");
    // Another email is not throttled by it.
    operator(&admin, "mallory@example.com", "viewer").await;
    assert!(sign_in(&gw, "mallory@example.com", "correct horse battery")
        .await
        .is_ok());

    // The same body, and about the same time, whether or not the email exists.
    operator(&admin, "timed@example.com", "viewer").await;
    let mut known = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    let mut bodies = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let (_, body, _) = sign_in(&gw, "timed@example.com", "wrong password!")
            .await
            .err()
            .unwrap();
        known += started.elapsed();
        bodies.push(body["error"]["message"].clone());
        // A success clears the count, so the known email is never throttled here.
        assert!(sign_in(&gw, "timed@example.com", "correct horse battery")
            .await
            .is_ok());
        let started = Instant::now();
        let (_, body, _) = sign_in(&gw, &format!("nobody{i}@example.com"), "wrong password!")
            .await
            .err()
            .unwrap();
        unknown += started.elapsed();
        bodies.push(body["error"]["message"].clone());
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "{bodies:?}"
    );
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    println!(
        "sign-in, 20 tries each: known email {known:?}, unknown {unknown:?}, ratio {ratio:.2}"
    );
    assert!(
        (0.67..=1.5).contains(&ratio),
        "known {known:?}, unknown {unknown:?}"
    );
    let scrape = gw.scrape();
    assert_eq!(
        metric(&scrape, "tollgate_signins_total{result=\"throttled\"}"),
        1.0
    );
    assert!(metric(&scrape, "tollgate_signins_total{result=\"failed\"}") >= 45.0);
    assert!(
        metric(
            &scrape,
            "tollgate_admin_requests_total{permission=\"operators:write\",status=\"201\"}"
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_hold_on_every_replica_at_once() {
    let up = upstream();
    let db = Backend::postgres();
    let text = config(&up, &db.url());
    let (a, b) =
        tokio::task::spawn_blocking(move || (Gateway::start(&text), Gateway::start(&text)))
            .await
            .unwrap();
    let admin = Admin::of(&a);
    let (id, secret) = token(&admin, json!({"name": "ci", "role": "viewer"})).await;
    // Long enough to outlast the argon2 sign-in below on a busy machine.
    let expires_at = tollgate::clock::now_ms() + 8_000;
    let soon = tollgate::clock::rfc3339(expires_at);
    let (_, expiring) = token(
        &admin,
        json!({"name": "brief", "role": "viewer", "expires_at": soon}),
    )
    .await;
    let ops = operator(&admin, "ops@example.com", "viewer").await;
    let session_on_b = sign_in(&b, "ops@example.com", "correct horse battery")
        .await
        .unwrap();
    for gw in [&a, &b] {
        assert_eq!(
            As::token(gw, &secret)
                .call(Method::GET, "/keys", None)
                .await
                .0,
            200
        );
        assert_eq!(
            As::token(gw, &expiring)
                .call(Method::GET, "/keys", None)
                .await
                .0,
            200
        );
    }
    assert_eq!(session_on_b.call(Method::GET, "/keys", None).await.0, 200);
    // Revoked on A: refused on B at the very next call.
    let (status, revoked) = admin.post(&format!("/tokens/{id}/revoke"), json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    admin
        .call(
            Method::PATCH,
            &format!("/operators/{}", ops["id"].as_str().unwrap()),
            Some(json!({"disabled": true})),
        )
        .await;
    for gw in [&a, &b] {
        let (status, answer) = As::token(gw, &secret)
            .call(Method::GET, "/keys", None)
            .await;
        assert_eq!((status, code(&answer)), (401, "unauthorized"));
    }
    assert_eq!(session_on_b.call(Method::GET, "/keys", None).await.0, 401);
    let left = expires_at + 100 - tollgate::clock::now_ms();
    tokio::time::sleep(Duration::from_millis(left.max(0) as u64)).await;
    for gw in [&a, &b] {
        assert_eq!(
            As::token(gw, &expiring)
                .call(Method::GET, "/keys", None)
                .await
                .0,
            401
        );
    }
    // An admin token is never a data-plane credential.
    let response = reqwest::Client::new()
        .get(a.url("/v1/accounts"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "invalid_api_key");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_token_or_session_id_is_ever_shown_logged_or_counted() {
    let up = upstream();
    let mut gw = Gateway::start(&config(&up, "sqlite://{dir}/data/tollgate.db"));
    let admin = Admin::of(&gw);
    let password = "canary passphrase 4711";
    let (status, made) = admin
        .post(
            "/operators",
            json!({"email": "c@example.com", "name": "C", "password": password, "role": "owner"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, secret) = token(&admin, json!({"name": "canary", "role": "viewer"})).await;
    let session = sign_in(&gw, "c@example.com", password).await.unwrap();
    let _ = sign_in(&gw, "c@example.com", "canary wrong passphrase").await;
    let (_, tokens) = admin.get("/tokens").await;
    let (_, operators) = admin.get("/operators").await;
    let (_, audit) = admin.get("/audit?limit=500").await;
    let scrape = gw.scrape();
    gw.signal_and_wait("TERM", Duration::from_secs(20));
    let everything = [
        made.to_string(),
        tokens.to_string(),
        operators.to_string(),
        audit.to_string(),
        scrape,
        gw.stdout(),
        gw.stderr(),
    ]
    .join("\n");
    let session_id = session.cookie.unwrap();
    for secret in [
        password,
        "canary wrong passphrase",
        &secret,
        &session_id,
        "argon2",
    ] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn bootstrap_makes_the_first_owner_once() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let text = config(&up, "sqlite://{dir}/data/tollgate.db")
        .replace("{listen}", "127.0.0.1:1")
        .replace("{admin}", "127.0.0.1:2")
        .replace("{metrics}", "127.0.0.1:3")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("tollgate.yaml");
    write_file(&path, &text);
    let run = |password: &str| {
        std::process::Command::new(BIN)
            .args(["bootstrap", "--email", "Root@Example.com", "--config"])
            .arg(&path)
            .env("TOLLGATE_OWNER_PASSWORD", password)
            .output()
            .unwrap()
    };
    let short = run("short");
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("12"));
    let first = run("correct horse battery");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("Root@Example.com"));
    let second = run("correct horse battery");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("an owner exists already"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_operators_and_tokens() {
    let up = upstream();
    let gw = Gateway::start(&config(&up, "sqlite://{dir}/data/tollgate.db"));
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("TOLLGATE_ADMIN_URL", format!("http://{}", gw.admin))
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(
        &[
            "operators",
            "create",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
            "--role",
            "key_manager",
            "--json",
        ],
        &[("TOLLGATE_OPERATOR_PASSWORD", "correct horse battery")],
    );
    assert_eq!(code, 0, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let id = made["id"].as_str().unwrap();
    let (code, out, _) = cli(&["operators", "list"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ops@example.com") && out.contains("key_manager"),
        "{out}"
    );
    let (code, out, _) = cli(
        &["operators", "update", id, "--role", "viewer", "--json"],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["role"],
        "viewer"
    );
    let (code, out, _) = cli(&["operators", "disable", id, "--json"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["disabled"],
        true
    );

    let (code, out, err) = cli(
        &[
            "tokens",
            "create",
            "--name",
            "ci",
            "--permission",
            "keys:read",
            "--expires-in",
            "30d",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("This secret is shown once"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    assert!(secret.starts_with("tg_adm_"));
    let (code, out, _) = cli(&["whoami", "--json"], &[("TOLLGATE_ADMIN_TOKEN", &secret)]);
    assert_eq!(code, 0);
    let me: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (me["kind"].as_str(), me["permissions"].clone()),
        (Some("token"), json!(["keys:read"]))
    );
    let (code, out, _) = cli(&["tokens", "list"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("ci") && !out.contains(&secret), "{out}");
    let token_id = me["id"].as_str().unwrap();
    let (code, _, _) = cli(&["tokens", "revoke", token_id], &[]);
    assert_eq!(code, 0);
    let (code, _, err) = cli(&["whoami"], &[("TOLLGATE_ADMIN_TOKEN", &secret)]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
}
