//! Forward auth (SPEC section 12) with the real proxies, from Debian's packages: nginx with
//! `auth_request` and Caddy with `forward_auth`, each running the configuration shipped in
//! `deploy/forward-auth/`, in front of the echo upstream. Also: the listener's own answers,
//! one limit shared with inline traffic, and the Traefik and Envoy files checked for shape.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn config(up: &Upstream) -> String {
    format!(
        r#"
listen: "{{listen}}"
threads: 1
grace_period: 5s
upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
forward_auth: {{ listen: "{{forward_auth}}" }}
store: {{ url: "sqlite://{{dir}}/tollgate.db" }}
oauth: {{ issuer: "http://{{listen}}", signing_key_path: "{{dir}}/signing.pem" }}
access_log: "{{dir}}/access.log"
trusted_proxies: [127.0.0.1/32]
permissions: [accounts:read, accounts:write]
rate_limits:
  tiers:
    anonymous: {{ per_minute: 1000, per_day: 100000 }}
    api_key: {{ per_minute: 300, per_day: 100000 }}
  burst: {{ requests: 10000, per: 10s }}
upstreams:
  echo: {{ targets: ["{up}"] }}
routes:
  - {{ path_prefix: /v1/accounts, methods: [GET], upstream: echo, require: [accounts:read] }}
  - {{ path_prefix: /v1/accounts, methods: [POST], upstream: echo, require: [accounts:write] }}
  - {{ path_prefix: /v1/public, upstream: echo, anonymous: true }}
"#,
        up = up.addr
    )
}

/// The shipped file with its example addresses replaced by this test's.
fn shipped(name: &str, replacements: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/forward-auth")
        .join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    text
}

/// A proxy process, stopped on drop.
struct Proxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Proxy {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait(mut self) -> Proxy {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}: {}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped file `file`, with the example addresses replaced, written to a folder of
/// its own where the proxy also logs.
fn prepared(
    file: &str,
    forward_auth: SocketAddr,
    up: &Upstream,
    listen: (&str, String),
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let replacements = [
        ("127.0.0.1:8081", forward_auth.to_string()),
        ("127.0.0.1:3000", up.addr.to_string()),
        (listen.0, listen.1),
    ];
    let path = dir.path().join(file);
    std::fs::write(&path, shipped(file, &replacements)).unwrap();
    (dir, path)
}

/// Starts `command`, logging to the folder, and waits for its port.
fn run(name: &'static str, mut command: Command, dir: tempfile::TempDir, port: u16) -> Proxy {
    let file = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = command
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Proxy {
        child,
        port,
        dir,
        name,
    }
    .wait()
}

fn nginx(forward_auth: SocketAddr, up: &Upstream) -> Proxy {
    let port = free_port();
    let listen = ("listen 8080;", format!("listen 127.0.0.1:{port};"));
    let (dir, conf) = prepared("nginx.conf", forward_auth, up, listen);
    let prefix = dir.path().display().to_string();
    let globals = format!("daemon off; pid {prefix}/nginx.pid; error_log {prefix}/log;");
    let nginx = |extra: &[&str]| {
        let mut command = Command::new(nginx_binary());
        command
            .args(extra)
            .args(["-p", &prefix, "-c"])
            .arg(&conf)
            .args(["-g", &globals]);
        command
    };
    let test = nginx(&["-t", "-q"]).output().unwrap();
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );
    run("nginx", nginx(&[]), dir, port)
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is installed by make test (.ci/deps.sh)")
}

fn caddy(forward_auth: SocketAddr, up: &Upstream) -> Proxy {
    let port = free_port();
    let listen = (":8080 {", format!("http://127.0.0.1:{port} {{"));
    let (dir, conf) = prepared("Caddyfile", forward_auth, up, listen);
    let mut command = Command::new("caddy");
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    run("caddy", command, dir, port)
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = http.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

async fn get(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(http, reqwest::Method::GET, url, headers).await
}

/// The last request the upstream saw.
fn last_seen(up: &Upstream) -> tollgate::echo::Recorded {
    up.recorder
        .requests()
        .pop()
        .expect("the upstream saw a request")
}

struct Keys {
    reader: (String, String),
    elsewhere: String,
    limited: String,
}

async fn keys(admin: &Admin) -> Keys {
    let reader = admin
        .create_key(json!({"name": "reader", "permissions": ["accounts:read"], "ip_allowlist": ["127.0.0.1/32"]}))
        .await;
    let (_, elsewhere) = admin
        .create_key(json!({"name": "elsewhere", "permissions": ["accounts:read"], "ip_allowlist": ["10.0.0.0/8"]}))
        .await;
    let (_, limited) = admin
        .create_key(json!({"name": "limited", "permissions": ["accounts:read"], "rate_limit": {"per_minute": 2, "per_day": 1000}}))
        .await;
    Keys {
        reader,
        elsewhere,
        limited,
    }
}

/// The stories of the issue, through one proxy: identity upstream and no credential, the
/// data plane's own refusals (401 with its JSON, 403 for an address, 429 with
/// `Retry-After`), and nothing the client sends under tollgate's names.
async fn through(proxy: &Proxy, gw: &Gateway, up: &Upstream, keys: &Keys) {
    let http = reqwest::Client::new();
    let name = proxy.name;
    let (reader_id, reader) = (&keys.reader.0, keys.reader.1.as_str());
    up.recorder.clear();

    let allowed = get(
        &http,
        &proxy.url("/v1/accounts/7"),
        &[("x-api-key", reader)],
    )
    .await;
    assert_eq!(
        allowed.status, 200,
        "{name}: {} {:?}",
        allowed.text, allowed.headers
    );
    let seen = last_seen(up);
    assert_eq!(seen.uri, "/v1/accounts/7", "{name}");
    assert_eq!(seen.header("x-tollgate-auth-method"), ["api_key"], "{name}");
    assert_eq!(
        seen.header("x-tollgate-subject"),
        [reader_id.as_str()],
        "{name}"
    );
    assert_eq!(
        seen.header("x-tollgate-permissions"),
        ["accounts:read"],
        "{name}"
    );
    assert_eq!(seen.header("x-tollgate-client-id").len(), 1, "{name}");
    assert_eq!(seen.header("x-request-id").len(), 1, "{name}");

    let bearer = format!("Bearer {reader}");
    let spoofed = [
        ("authorization", bearer.as_str()),
        ("x-tollgate-subject", "key_forged"),
    ];
    assert_eq!(
        get(&http, &proxy.url("/v1/accounts/8"), &spoofed)
            .await
            .status,
        200,
        "{name}"
    );
    let seen = last_seen(up);
    assert_eq!(
        seen.header("x-tollgate-subject"),
        [reader_id.as_str()],
        "{name}: spoofed"
    );
    // An anonymous route: the client's claim to be someone does not reach the API.
    let anonymous = [("x-tollgate-subject", "key_forged")];
    assert_eq!(
        get(&http, &proxy.url("/v1/public/x"), &anonymous)
            .await
            .status,
        200,
        "{name}"
    );
    let seen = last_seen(up);
    assert_eq!(
        seen.header("x-tollgate-auth-method"),
        ["anonymous"],
        "{name}"
    );
    // (Caddy copies the listener's empty value; nginx drops an empty header.)
    let subject = seen.header("x-tollgate-subject");
    assert!(
        subject.iter().all(|v| v.is_empty()),
        "{name}: {:?}",
        seen.headers
    );

    // A wrong key: the data plane's 401, body and challenge.
    let wrong = get(
        &http,
        &proxy.url("/v1/accounts/1"),
        &[("x-api-key", "tg_live_nope")],
    )
    .await;
    let inline = get(
        &http,
        &gw.url("/v1/accounts/1"),
        &[("x-api-key", "tg_live_nope")],
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (401, "invalid_api_key"),
        "{name}"
    );
    assert_eq!(
        wrong.body["error"]["message"], inline.body["error"]["message"],
        "{name}"
    );
    assert_eq!(
        wrong.header("content-type"),
        Some("application/json"),
        "{name}"
    );
    assert_eq!(
        wrong.header("www-authenticate"),
        inline.header("www-authenticate"),
        "{name}"
    );
    assert!(
        wrong.header("x-ratelimit-limit").is_some(),
        "{name}: {:?}",
        wrong.headers
    );
    let id = wrong.header("x-request-id").unwrap_or_default();
    assert_eq!(wrong.body["error"]["request_id"], id, "{name}");

    // Missing: the data plane's 401 without `invalid_token`.
    let missing = get(&http, &proxy.url("/v1/accounts/1"), &[]).await;
    assert_eq!(
        (missing.status, missing.code()),
        (401, "missing_credentials"),
        "{name}"
    );

    // A wrong address, and a missing permission: 403 with the code.
    let elsewhere = [("x-api-key", keys.elsewhere.as_str())];
    let refused = get(&http, &proxy.url("/v1/accounts/1"), &elsewhere).await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "ip_not_allowed"),
        "{name}"
    );
    let write = send(
        &http,
        reqwest::Method::POST,
        &proxy.url("/v1/accounts"),
        &[("x-api-key", reader)],
    )
    .await;
    assert_eq!(
        (write.status, write.code()),
        (403, "insufficient_permission"),
        "{name}"
    );
    assert_eq!(
        write.body["error"]["message"], "this route requires the permission \"accounts:write\"",
        "{name}"
    );

    // Unrouted: 404 with its code (nginx passes it as 403 and answers the real status).
    let nowhere = get(&http, &proxy.url("/nowhere"), &[]).await;
    assert_eq!(
        (nowhere.status, nowhere.code()),
        (404, "route_not_found"),
        "{name}"
    );

    // Over the key's own limit: 429 with Retry-After, as inline.
    let limited = [("x-api-key", keys.limited.as_str())];
    let mut last = None;
    for _ in 0..3 {
        last = Some(get(&http, &proxy.url("/v1/accounts/1"), &limited).await);
    }
    let over = last.unwrap();
    assert_eq!(
        (over.status, over.code()),
        (429, "rate_limited"),
        "{name}: {:?}",
        over.body
    );
    let retry: u64 = over
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{name}: {retry}");
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"), "{name}");

    // The credential never reached the upstream, in any request.
    for seen in up.recorder.requests() {
        assert!(
            seen.header("x-api-key").is_empty(),
            "{name}: {:?}",
            seen.headers
        );
        assert!(
            seen.header("authorization")
                .iter()
                .all(|v| !v.to_ascii_lowercase().starts_with("bearer")),
            "{name}: {:?}",
            seen.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_behind_real_nginx_and_caddy_and_on_its_own() {
    let up = upstream();
    let gw = Gateway::start_with_env(
        &config(&up),
        &[("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN.into())],
    );
    let admin = Admin::of(&gw);
    away_from_window_edges(Duration::from_secs(20)).await;

    let nginx_keys = keys(&admin).await;
    let proxy = nginx(gw.forward_auth, &up);
    through(&proxy, &gw, &up, &nginx_keys).await;
    drop(proxy);

    let caddy_keys = keys(&admin).await;
    let proxy = caddy(gw.forward_auth, &up);
    through(&proxy, &gw, &up, &caddy_keys).await;
    drop(proxy);

    the_listener_answers_on_its_own(&gw, &admin).await;
    forward_auth_and_inline_traffic_share_one_limit(&gw, &admin).await;
    counted_and_logged_like_the_data_plane(&gw);
}

async fn the_listener_answers_on_its_own(gw: &Gateway, admin: &Admin) {
    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.forward_auth);
    let (id, key) = admin
        .create_key(json!({"name": "direct", "permissions": ["accounts:read"]}))
        .await;
    // Envoy's shape: the original method, the original path after /verify.
    let envoy = get(
        &http,
        &format!("{base}/verify/v1/accounts/3?x=1"),
        &[("x-api-key", &key)],
    )
    .await;
    assert_eq!(envoy.status, 200, "{:?}", envoy.body);
    assert_eq!(envoy.header("x-tollgate-subject"), Some(id.as_str()));
    assert_eq!(envoy.header("x-tollgate-auth-method"), Some("api_key"));
    assert!(envoy.header("x-ratelimit-remaining").is_some());
    assert!(envoy.header("x-request-id").is_some());
    // Traefik's and Caddy's shape: X-Forwarded-Method and X-Forwarded-Uri.
    let post = [
        ("x-api-key", key.as_str()),
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/v1/accounts"),
    ];
    let refused = get(&http, &format!("{base}/verify"), &post).await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "insufficient_permission")
    );
    // A bare /verify says nothing of the request: 400.
    let bare = get(&http, &format!("{base}/verify"), &[("x-api-key", &key)]).await;
    assert_eq!((bare.status, bare.code()), (400, "invalid_request"));
    // /nginx: statuses nginx cannot pass become 403, with the real one in headers.
    let unrouted = [("x-original-uri", "/nowhere"), ("x-original-method", "GET")];
    let nginx = get(&http, &format!("{base}/nginx"), &unrouted).await;
    assert_eq!(nginx.status, 403);
    assert_eq!(nginx.header("x-tollgate-status"), Some("404"));
    assert_eq!(
        nginx.header("x-tollgate-error-code"),
        Some("route_not_found")
    );
    assert_eq!(
        nginx.header("x-tollgate-error-message"),
        Some("no route matches this method and path")
    );
    // A header name with `_` is never read: `x_api_key` is no credential.
    let underscored = [
        ("x_api_key", key.as_str()),
        ("x-forwarded-uri", "/v1/accounts/1"),
    ];
    let ignored = get(&http, &format!("{base}/verify"), &underscored).await;
    assert_eq!(
        (ignored.status, ignored.code()),
        (401, "missing_credentials")
    );
    let framing = [
        ("x-api-key", key.as_str()),
        ("x-forwarded-uri", "/v1/accounts/1"),
        ("transfer_encoding", "chunked"),
    ];
    let smuggled = get(&http, &format!("{base}/verify"), &framing).await;
    assert_eq!((smuggled.status, smuggled.code()), (400, "invalid_request"));
    // Any other path of the listener is not an endpoint; it proxies nothing.
    let other = get(
        &http,
        &format!("{base}/v1/accounts/1"),
        &[("x-api-key", &key)],
    )
    .await;
    assert_eq!((other.status, other.code()), (404, "route_not_found"));
}

/// 300 a minute for the key, asked 600 times half inline and half through forward auth:
/// 300 allowed in all, because both read one limiter.
async fn forward_auth_and_inline_traffic_share_one_limit(gw: &Gateway, admin: &Admin) {
    let (_, key) = admin
        .create_key(json!({"name": "shared", "permissions": ["accounts:read"]}))
        .await;
    away_from_window_edges(Duration::from_secs(25)).await;
    let http = reqwest::Client::new();
    let verify = format!("http://{}/verify/v1/accounts/1", gw.forward_auth);
    let inline = gw.url("/v1/accounts/1");
    let mut allowed = (0, 0);
    for _ in 0..300 {
        let a = get(&http, &inline, &[("x-api-key", &key)]).await;
        let b = get(&http, &verify, &[("x-api-key", &key)]).await;
        allowed.0 += usize::from(a.status == 200);
        allowed.1 += usize::from(b.status == 200);
        for answer in [&a, &b] {
            assert!(
                answer.status == 200 || answer.code() == "rate_limited",
                "{:?}",
                answer.body
            );
        }
    }
    assert_eq!(
        allowed.0 + allowed.1,
        300,
        "inline {} + forward auth {}",
        allowed.0,
        allowed.1
    );
    assert!(allowed.0 > 0 && allowed.1 > 0, "{allowed:?}");
}

/// The same series and the same log line as the data plane.
fn counted_and_logged_like_the_data_plane(gw: &Gateway) {
    let scrape = gw.scrape();
    // Only the proxies asked with a key from the wrong address: one decision each.
    let refused = metric(
        &scrape,
        "tollgate_auth_decisions_total{method=\"api_key\",outcome=\"ip_not_allowed\"}",
    );
    assert!(refused >= 2.0, "{refused}");
    // The unrouted asks of every proxy are counted under the data plane's own series.
    let unmatched: f64 = scrape
        .lines()
        .filter(|line| {
            line.starts_with("tollgate_requests_total{") && line.contains("route=\"unmatched\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(unmatched >= 3.0, "{unmatched}");
    // `/v1/accounts/7` was asked only through nginx and Caddy: one line each, with the
    // original path and the key it was about.
    let lines = |path: &str, outcome: &str| {
        let log = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["path"] == path && line["outcome"] == outcome)
            .filter(|line| line["key_id"].is_string() && line["method"] == "GET")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while lines("/v1/accounts/7", "allowed") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines("/v1/accounts/7", "allowed"), 2);
    assert!(lines("/v1/accounts/1", "ip_not_allowed") >= 2);
    let log = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default();
    assert!(!log.contains("tg_live_"), "no credential in the log");
}

/// Traefik and Envoy are not in Debian's archive, so their files are checked for shape: the
/// endpoint they ask, the headers they pass, and the stripped credential.
#[test]
fn the_traefik_and_envoy_files_point_at_the_verify_endpoint() {
    let traefik: Value = serde_yaml_ng::from_str(&shipped("traefik.yaml", &[])).unwrap();
    let auth = &traefik["http"]["middlewares"]["tollgate"]["forwardAuth"];
    assert_eq!(auth["address"], "http://127.0.0.1:8081/verify");
    assert_eq!(auth["trustForwardHeader"], false);
    let copied: Vec<&str> = auth["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for header in [
        "X-Tollgate-Subject",
        "X-Tollgate-Auth-Method",
        "X-Tollgate-Permissions",
        "X-Request-Id",
    ] {
        assert!(copied.contains(&header), "{header}");
    }
    let router = &traefik["http"]["routers"]["api"];
    assert_eq!(router["middlewares"][0], "tollgate");
    assert_eq!(
        traefik["http"]["middlewares"]["tollgate-strip-credentials"]["headers"]
            ["customRequestHeaders"]["X-Api-Key"],
        ""
    );

    let envoy: Value = serde_yaml_ng::from_str(&shipped("envoy.yaml", &[])).unwrap();
    let manager = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let ext_authz = &manager["http_filters"][0]["typed_config"];
    assert_eq!(
        ext_authz["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
    );
    assert_eq!(ext_authz["http_service"]["path_prefix"], "/verify");
    assert_eq!(
        ext_authz["http_service"]["server_uri"]["cluster"],
        "tollgate"
    );
    assert_eq!(
        manager["common_http_protocol_options"]["headers_with_underscores_action"],
        "DROP_HEADER"
    );
    let route = &manager["route_config"]["virtual_hosts"][0]["routes"][0];
    assert_eq!(
        route["request_headers_to_remove"],
        json!(["x-api-key", "authorization"])
    );
    let clusters: Vec<&str> = envoy["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(clusters, ["api", "tollgate"]);
}
