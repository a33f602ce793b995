//! Environments (SPEC 15): one gateway accepting keys of several environments, each sent to
//! its own upstream where a route says so, routes restricted to environments, keys shaped
//! like seed 004's `atom_pub_…`, and `X-Tollgate-Environment` upstream.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

fn config(live: &Upstream, sandbox: &Upstream, dir: &std::path::Path) -> String {
    format!(
        r#"
listen: "{{listen}}"
threads: 1
grace_period: 5s
key_prefix: atom
environments: [live, test, pub]
upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
store: {{ url: "sqlite://{db}/environments.db" }}
oauth: {{ issuer: "http://{{listen}}", signing_key_path: "{{dir}}/signing.pem" }}
permissions: [accounts:read]
upstreams:
  accounts: {{ targets: ["{live}"] }}
  accounts-sandbox: {{ targets: ["{sandbox}"] }}
routes:
  - path_prefix: /v1/accounts
    upstream: accounts
    upstream_by_environment: {{ test: accounts-sandbox }}
    require: [accounts:read]
  - path_prefix: /v1/playground
    upstream: accounts-sandbox
    environments: [test]
    require: [accounts:read]
"#,
        live = live.addr,
        sandbox = sandbox.addr,
        db = dir.display()
    )
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

async fn call(gw: &Gateway, path: &str, key: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(gw.url(path))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (status, code(&body).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_environment_reaches_its_upstream_and_restricted_routes_refuse_the_others() {
    let (live, sandbox) = (upstream(), upstream());
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(&live, &sandbox, dir.path()));
    let admin = Admin::of(&gw);
    let key = |environment: Option<&str>| {
        let mut body = json!({"name": "k", "permissions": ["accounts:read"]});
        if let Some(environment) = environment {
            body["environment"] = json!(environment);
        }
        body
    };
    // No environment named: the first listed.
    let (_, live_key) = admin.create_key(key(None)).await;
    let (_, test_key) = admin.create_key(key(Some("test"))).await;
    let (_, pub_key) = admin.create_key(key(Some("pub"))).await;
    assert!(live_key.starts_with("atom_live_"), "{live_key}");
    assert!(test_key.starts_with("atom_test_"), "{test_key}");
    assert!(pub_key.starts_with("atom_pub_"), "{pub_key}");
    let (status, refused) = admin.post("/keys", key(Some("staging"))).await;
    assert_eq!(
        (status, code(&refused)),
        (400, "invalid_request"),
        "{refused}"
    );

    // A live key reaches the live upstream, a test key the sandbox, a pub key the default.
    assert_eq!(call(&gw, "/v1/accounts", &live_key).await.0, 200);
    assert_eq!(call(&gw, "/v1/accounts", &test_key).await.0, 200);
    assert_eq!(call(&gw, "/v1/accounts", &pub_key).await.0, 200);
    let seen = |up: &Upstream| -> Vec<String> {
        up.recorder
            .requests()
            .iter()
            .map(|r| r.header("x-tollgate-environment").join(","))
            .collect()
    };
    assert_eq!(seen(&live), ["live", "pub"]);
    assert_eq!(seen(&sandbox), ["test"]);

    // A route restricted to test.
    assert_eq!(
        call(&gw, "/v1/playground", &live_key).await,
        (401, "wrong_environment".into())
    );
    assert_eq!(
        call(&gw, "/v1/playground", &pub_key).await,
        (401, "wrong_environment".into())
    );
    assert_eq!(call(&gw, "/v1/playground", &test_key).await.0, 200);
    assert_eq!(seen(&sandbox), ["test", "test"]);

    // A genuine key of an environment this gateway does not accept.
    let staging = tollgate::config::Environment::parse("staging").unwrap();
    let foreign = tollgate::auth::api_key::mint("atom", staging).secret;
    assert_eq!(
        call(&gw, "/v1/accounts", &foreign).await,
        (401, "wrong_environment".into())
    );
    // Its checksum broken: not a key at all.
    let mut broken = foreign.clone();
    broken.pop();
    broken.push(if foreign.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        call(&gw, "/v1/accounts", &broken).await,
        (401, "invalid_api_key".into())
    );
}

#[test]
fn environment_names_and_routes_are_checked_where_they_are_written() {
    let errors = |yaml: &str| match tollgate::config::Config::parse(yaml) {
        Ok(_) => String::new(),
        Err(errors) => errors.to_string(),
    };
    assert!(errors("environments: [Live]").contains("lowercase word of 2 to 12 letters"));
    assert!(errors("environments: [live, live]").contains("listed twice"));
    assert!(errors("environments: [adm]").contains("admin tokens"));
    assert!(errors("environment: live\nenvironments: [live, test]").contains("not both"));
    let route = |extra: &str| {
        format!(
            "environments: [live, test]\npermissions: [a]\nupstreams:\n  api: {{ targets: [\"127.0.0.1:9\"] }}\nroutes:\n  - path_prefix: /v1\n    upstream: api\n{extra}"
        )
    };
    assert_eq!(errors(&route("    environments: [test]\n")), "");
    assert!(errors(&route("    environments: [pub]\n")).contains("not one of this gateway's"));
    assert!(
        errors(&route("    upstream_by_environment: { test: nowhere }\n"))
            .contains("unknown upstream")
    );
    // `environment: live` keeps meaning one.
    let one = tollgate::config::Config::parse("environment: test").unwrap();
    assert_eq!(one.environments, [tollgate::config::Environment::TEST]);
}
