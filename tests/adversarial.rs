//! What a hostile client tries next (the hardening issue): pipelining past a refusal,
//! upgrades without credentials, spoofed identity and address headers, path tricks,
//! ES256 with a zero signature, and many idle connections.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::*;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn gateway(up: &Upstream, trusted: &str) -> Gateway {
    Gateway::start(
        &credentials_config(up, "sqlite://{dir}/data/tollgate.db", "live").replace(
            "infrastructure_ips: [127.0.0.3/32]",
            &format!("infrastructure_ips: [127.0.0.3/32]\ntrusted_proxies: [{trusted}]"),
        ),
    )
}

async fn key(gw: &Gateway, allowlist: &[&str]) -> (String, String) {
    Admin::of(gw)
        .create_key(
            json!({"name": "k", "permissions": ["accounts:read"], "ip_allowlist": allowlist}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_request_without_a_key_is_refused_on_its_own() {
    let up = upstream();
    let gw = gateway(&up, "10.0.0.0/8");
    let (_, key) = key(&gw, &[]).await;
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let both = format!(
        "GET /v1/accounts/1 HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\n\r\nGET /v1/accounts/2 HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    stream.write_all(both.as_bytes()).unwrap();
    let responses = read_pipelined(&mut stream, 2);
    assert_eq!(responses.len(), 2, "two responses, in order");
    let (first, second) = (&responses[0], &responses[1]);
    assert_eq!(first.status, 200);
    assert_eq!(
        (second.status, second.code().as_str()),
        (401, "missing_credentials")
    );
    let seen: Vec<String> = up
        .recorder
        .requests()
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(seen, ["/v1/accounts/1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_without_credentials_is_refused_and_not_forwarded() {
    let up = upstream();
    let gw = gateway(&up, "10.0.0.0/8");
    let response = raw(
        gw.addr,
        b"GET /v1/accounts HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert_eq!(
        (response.status, response.code().as_str()),
        (401, "missing_credentials")
    );
    assert!(up.recorder.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_cannot_be_spoofed_or_nominated_away() {
    let up = upstream();
    let gw = gateway(&up, "10.0.0.0/8");
    let (id, key) = key(&gw, &[]).await;
    let request = format!(
        "GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nX-Tollgate-Subject: key_admin\r\nx-tollgate-permissions: everything\r\n\
         X-TOLLGATE-CLIENT-ID: cid_admin\r\nX-Tollgate-Auth-Method: oauth\r\nx_tollgate_auth_method: api_key\r\nX_Tollgate_Subject: key_admin\r\nx_api_key: other\r\n\
         X-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nConnection: keep-alive, x-tollgate-subject, X-Tollgate-Permissions\r\n\r\n"
    );
    assert_eq!(raw(gw.addr, request.as_bytes()).status, 200);
    let requests = up.recorder.requests();
    let seen = requests.last().unwrap();
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("x_tollgate") || *n == "x_api_key" || *n == "forwarded"),
        "{names:?}"
    );
    assert_eq!(
        seen.header("x-tollgate-subject"),
        [id.as_str()],
        "Connection cannot strip the gateway's header"
    );
    assert_eq!(seen.header("x-tollgate-permissions"), ["accounts:read"]);
    assert_eq!(seen.header("x-tollgate-auth-method"), ["api_key"]);
    let client_id = seen.header("x-tollgate-client-id");
    assert!(
        client_id.len() == 1 && client_id[0].starts_with("cid_") && client_id[0] != "cid_admin",
        "{client_id:?}"
    );
    assert_eq!(seen.header("x-real-ip"), ["127.0.0.1"]);
    assert!(seen.header("x-api-key").is_empty());
    assert!(
        !format!("{requests:?}").contains(&key),
        "the credential never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let up = upstream();
    // The test client (127.0.0.1) is not trusted here: its claims are ignored.
    let gw = gateway(&up, "10.0.0.0/8");
    let (_, secret) = key(&gw, &["203.0.113.9"]).await;
    let spoofed = format!(
        "GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {secret}\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\n\r\n"
    );
    let response = raw(gw.addr, spoofed.as_bytes());
    assert_eq!(
        (response.status, response.code().as_str()),
        (403, "ip_not_allowed")
    );
    assert!(up.recorder.requests().is_empty());

    // Behind a trusted proxy (127.0.0.0/8), the chain is walked right to left.
    let behind = gateway(&up, "127.0.0.0/8");
    let (_, key) = key(&behind, &["203.0.113.9"]).await;
    let through = |chain: &str| {
        raw(behind.addr, format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nX-Forwarded-For: {chain}\r\n\r\n").as_bytes())
    };
    assert_eq!(through("6.6.6.6, 203.0.113.9, 127.0.0.5").status, 200);
    assert_eq!(
        through("::ffff:203.0.113.9").status,
        200,
        "IPv4-mapped IPv6 matches the IPv4 rule"
    );
    let allowed_so_far = up.recorder.requests().len();
    for (chain, why) in [
        (
            "203.0.113.9, 198.51.100.1",
            "the first untrusted address is the client",
        ),
        (
            "203.0.113.9, garbage",
            "garbage stops the walk at the proxy",
        ),
        ("203.0.113.9, 300.1.1.1", "an impossible address is garbage"),
        ("203.0.113.9,", "an empty entry is garbage"),
    ] {
        let refused = through(chain);
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (403, "ip_not_allowed"),
            "{why}"
        );
    }
    assert_eq!(up.recorder.requests().len(), allowed_so_far);
    let forwarded = up.recorder.requests();
    assert_eq!(
        forwarded.last().unwrap().header("x-real-ip"),
        ["203.0.113.9"],
        "the client, as worked out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_are_decided_on_the_path_that_is_forwarded() {
    let up = upstream();
    let gw = gateway(&up, "10.0.0.0/8");
    let (_, key) = key(&gw, &[]).await;
    for (path, status, forwarded) in [
        ("/v1/%61ccounts/7", 200, Some("/v1/accounts/7")),
        ("//v1/accounts", 200, Some("/v1/accounts")),
        ("/v1/public/../accounts", 200, Some("/v1/accounts")),
        ("/v1/accounts;x", 404, None),
        ("/v1/public/%2e%2e/accounts", 200, Some("/v1/accounts")),
    ] {
        up.recorder.clear();
        let response = raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\n\r\n").as_bytes(),
        );
        assert_eq!(response.status, status, "{path}");
        let seen: Vec<String> = up
            .recorder
            .requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect();
        assert_eq!(seen.first().map(String::as_str), forwarded, "{path}");
    }
    // Without the key, the same tricks never reach the protected route's upstream.
    up.recorder.clear();
    for path in ["/v1/%61ccounts", "//v1/accounts", "/v1/public/../accounts"] {
        let response = raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            (response.status, response.code().as_str()),
            (401, "missing_credentials"),
            "{path}"
        );
    }
    assert!(up.recorder.requests().is_empty());
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn es256_with_a_zero_signature_is_refused() {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let up = upstream();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "x": b64(&public[1..33]), "y": b64(&public[33..65])});
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwk = jwk.clone();
            async move { axum::Json(json!({"keys": [jwk]})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let yaml = credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live").replace(
        "signing_key_path: \"{dir}/signing.pem\" }",
        &format!("signing_key_path: \"{{dir}}/signing.pem\", external_issuers: [{{ issuer: \"https://ec.test/\", jwks_url: \"http://{jwks}/jwks\", audience: api }}] }}"),
    );
    let gw = tokio::task::spawn_blocking(move || Gateway::start(&yaml))
        .await
        .unwrap();
    let now = tollgate::clock::now_ms() / 1000;
    let claims = json!({"iss": "https://ec.test/", "aud": "api", "sub": "s", "scope": "accounts:read", "exp": now + 600});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec1".into());
    let good = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http
        .get(gw.url("/v1/accounts"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a valid ES256 token was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parts: Vec<&str> = good.split('.').collect();
    let zero = format!("{}.{}.{}", parts[0], parts[1], b64(&[0u8; 64]));
    let forwarded = up.recorder.requests().len();
    let response = http
        .get(gw.url("/v1/accounts"))
        .bearer_auth(&zero)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(up.recorder.requests().len(), forwarded, "never forwarded");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap())
        })
        .unwrap()
}

#[test]
fn many_idle_keep_alive_connections_keep_memory_bounded() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up).replace(
        "permissions: [accounts:read, accounts:write]",
        "rate_limits: { tiers: { anonymous: { per_minute: 1000000, per_day: 10000000 } }, burst: { requests: 1000000, per: 10s } }\npermissions: [accounts:read, accounts:write]",
    ));
    let before = rss_kib(gw.pid());
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(gw.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let answered = read_pipelined(&mut stream, 1);
        assert_eq!(answered.first().map(|r| r.status), Some(200));
        idle.push(stream);
    }
    let after = rss_kib(gw.pid());
    let per_connection = (after.saturating_sub(before)) as f64 / 1000.0;
    println!("1000 idle keep-alive connections: RSS {before} -> {after} KiB ({per_connection:.1} KiB each)");
    assert!(
        per_connection < 64.0,
        "{per_connection} KiB per idle connection"
    );
    assert_eq!(
        http_get(gw.addr, "/v1/public/still-serving")
            .unwrap()
            .status,
        200
    );
    drop(idle);
}

#[test]
fn oauth_bodies_over_64_kib_get_413_on_every_endpoint() {
    let up = upstream();
    let gw = gateway(&up, "10.0.0.0/8");
    for path in [
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
        "/oauth/authorize",
    ] {
        // Declared too large: refused before a byte of the body is read.
        let declared = raw(
            gw.addr,
            format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 70000\r\n\r\ngrant_type=").as_bytes(),
        );
        assert_eq!(
            (declared.status, declared.code().as_str()),
            (413, "body_too_large"),
            "{path}"
        );
        assert!(declared.closed, "{path}");
        // Chunked, found too large while reading.
        let mut chunked = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        for _ in 0..5 {
            chunked.extend(format!("{:x}\r\n", 16 * 1024).as_bytes());
            chunked.extend(std::iter::repeat_n(b'a', 16 * 1024));
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        let streamed = raw(gw.addr, &chunked);
        assert_eq!(
            (streamed.status, streamed.code().as_str()),
            (413, "body_too_large"),
            "{path}"
        );
        assert!(streamed.closed, "{path}");
    }
    assert!(up.recorder.requests().is_empty());
    // The access log records them as what they were, not as allowed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let too_large = || {
        gw.stdout()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["route"] == "oauth" && line["outcome"] == "body_too_large")
            .count()
    };
    while too_large() < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(too_large(), 8, "{}", gw.stdout());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_leaves_no_secret_in_logs_or_metrics() {
    let up = upstream();
    let gw = Gateway::start(
        &credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live")
            .replace("threads: 1", "threads: 1\naccess_log: stdout"),
    );
    let (id, canary) = key(&gw, &["203.0.113.9"]).await;
    let body = &canary[8..];
    let hostile: Vec<Vec<u8>> = vec![
        // refused for its address, with the key in every place a client could put it
        format!("GET /v1/accounts/{canary}?api_key={canary} HTTP/1.1\r\nHost: t\r\nX-API-Key: {canary}\r\n\r\n").into_bytes(),
        format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {canary}\r\nX-API-Key: {canary}\r\n\r\n").into_bytes(),
        format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {canary}\r\n\r\n").into_bytes(),
        format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nCookie: session={canary}\r\nX-Canary: {canary}\r\n\r\n").into_bytes(),
        // malformed heads carrying it
        format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {canary}\r\nX-Nul: \0\r\n\r\n").into_bytes(),
        format!("GET /v1/accounts HTTP/1.1\nX-API-Key: {canary}\n\n").into_bytes(),
        format!("POST /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {canary}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(),
        format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", canary.repeat(300)).into_bytes(),
        // a token endpoint body and a wrong-environment key
        {
            let form = format!("grant_type=client_credentials&client_id=cid_x&client_secret={canary}");
            format!("POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}", form.len()).into_bytes()
        },
        format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {}\r\n\r\n", canary.replace("_live_", "_test_")).into_bytes(),
    ];
    for request in &hostile {
        let response = raw(gw.addr, request);
        assert!(
            (400..500).contains(&response.status),
            "{}: {response:?}",
            String::from_utf8_lossy(request)
        );
        assert!(!response.head.contains(body) && !response.body.contains(body));
    }
    assert!(up.recorder.requests().is_empty());
    let scrape = gw.scrape();
    // Let the access-log thread write what it was handed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = format!("{}{}", gw.stdout(), gw.stderr());
    assert!(logs.contains(&id), "the refusals were logged");
    for (place, text) in [("logs", &logs), ("metrics", &scrape)] {
        assert!(!text.contains(body), "the key leaked into the {place}");
    }
}

/// SPEC 12: a header name with `_` is ignored (dropped before forwarding, never read), and
/// a framing header spelled with one is refused, alone or pipelined.
#[tokio::test(flavor = "multi_thread")]
async fn underscored_header_names_are_dropped_and_underscored_framing_is_refused() {
    let up = upstream();
    let gw = gateway(&up, "10.0.0.0/8");
    let (_, key) = key(&gw, &[]).await;

    let smuggle = "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nContent-Length: 4\r\n\r\nabcd";
    let refused = raw(gw.addr, smuggle.as_bytes());
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "invalid_request")
    );
    let alone = "POST /v1/accounts HTTP/1.1\r\nHost: t\r\ncontent_length: 4\r\n\r\nabcd";
    let refused = raw(gw.addr, alone.as_bytes());
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "invalid_request")
    );

    // Pipelined behind an allowed request, the second head is refused on its own.
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let both = format!(
        "GET /v1/accounts/1 HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\n\r\nPOST /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nTransfer_Encoding: chunked\r\nContent-Length: 4\r\n\r\nabcd"
    );
    stream.write_all(both.as_bytes()).unwrap();
    let responses = read_pipelined(&mut stream, 2);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].status, 200);
    assert_eq!(
        (responses[1].status, responses[1].code().as_str()),
        (400, "invalid_request")
    );

    // A key under an underscored name is no credential.
    let sneaky = format!(
        "GET /v1/accounts/2 HTTP/1.1\r\nHost: t\r\nX_API_Key: {key}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(gw.addr, sneaky.as_bytes());
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (401, "missing_credentials")
    );

    // Any other underscored name is dropped before forwarding; its dashed twin is kept.
    let custom = format!(
        "GET /v1/accounts/3 HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nX_Custom: under\r\nX-Custom: dash\r\nX_Tollgate_Subject: key_forged\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw(gw.addr, custom.as_bytes()).status, 200);
    let seen: Vec<_> = up.recorder.requests();
    assert_eq!(
        seen.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(),
        ["/v1/accounts/1", "/v1/accounts/3"],
        "nothing refused reached the upstream"
    );
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-custom"), ["dash"]);
    assert!(
        last.headers.iter().all(|(name, _)| !name.contains('_')),
        "{:?}",
        last.headers
    );
    assert_ne!(last.header("x-tollgate-subject"), ["key_forged"]);
}
