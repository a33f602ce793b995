//! SPEC section 13 with real clients: curl over HTTP/1.1 and HTTP/2 (TLS and prior
//! knowledge), openssl s_client for versions and SNI, client certificates, an upstream
//! behind real TLS (openssl s_server), certificate reloads on SIGHUP under load, and the
//! metrics. One gateway serves most of it; the certificates are made here with rcgen.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const API: &str = "api.tollgate.test";
const OTHER: &str = "other.tollgate.test";

struct Answer {
    status: u16,
    version: String,
    headers: String,
    body: String,
}

/// curl, with the test CA and `name` resolved to the gateway. `extra` goes before the URL.
fn curl(ca: &Path, name: &str, addr: SocketAddr, path: &str, extra: &[&str]) -> Answer {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = dir.path().join("headers");
    let scheme = if extra.contains(&"--http2-prior-knowledge") || extra.contains(&"--plain") {
        "http"
    } else {
        "https"
    };
    let extra: Vec<&str> = extra.iter().copied().filter(|a| *a != "--plain").collect();
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{name}:{}:127.0.0.1", addr.port()),
            "-D",
        ])
        .arg(&headers)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(&extra)
        .arg(format!("{scheme}://{name}:{}{path}", addr.port()))
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut tail = tail.split(' ');
    Answer {
        status: tail.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        version: tail.next().unwrap_or("").to_string(),
        headers: std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// `openssl s_client` against `addr`; returns (exit success, output).
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The subject line of the certificate a handshake got.
fn served_subject(addr: SocketAddr, server_name: Option<&str>) -> String {
    let mut args = vec!["-showcerts"];
    if let Some(name) = server_name {
        args.extend(["-servername", name]);
    } else {
        args.push("-noservername");
    }
    let (_, text) = s_client(addr, &args);
    text.lines()
        .find(|line| line.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in:\n{text}"))
        .to_string()
}

fn metric(scrape: &str, line_start: &str) -> f64 {
    scrape
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// `openssl s_server -www` with a certificate from `ca`: a real TLS upstream.
struct TlsUpstream {
    child: Child,
    addr: SocketAddr,
}

impl TlsUpstream {
    fn start(files: &CertFiles) -> TlsUpstream {
        let port = free_port();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &port.to_string(),
                "-cert",
            ])
            .arg(&files.cert)
            .arg("-key")
            .arg(&files.key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "s_server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsUpstream { child, addr }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    gw: Gateway,
    https: SocketAddr,
    ca: PathBuf,
    client: CertFiles,
    other_client: CertFiles,
    rogue_client: CertFiles,
    api_files: CertFiles,
    server_ca: TestCa,
    _tls_upstream: TlsUpstream,
    _files: tempfile::TempDir,
}

fn setup(up: &Upstream) -> Setup {
    let files = tempfile::tempdir().expect("tempdir");
    let dir = files.path();
    let server_ca = TestCa::new("tollgate test server CA");
    let ca = server_ca.write(dir, "server-ca");
    let api_files = server_ca.server(dir, "api", &[API], 90);
    let other = server_ca.server(dir, "other", &[OTHER, "*.wild.tollgate.test"], 90);
    let clients_ca = TestCa::new("tollgate test client CA");
    let clients_ca_path = clients_ca.write(dir, "clients-ca");
    let client = clients_ca.client(dir, "client", "svc-billing", "Acme, Inc.");
    let other_client = clients_ca.client(dir, "other-client", "svc-reports", "Acme, Inc.");
    let rogue_client = TestCa::new("rogue").client(dir, "rogue", "svc-billing", "Acme, Inc.");
    let upstream_ca = TestCa::new("tollgate test upstream CA");
    let upstream_ca_path = upstream_ca.write(dir, "upstream-ca");
    let upstream_files = upstream_ca.server(dir, "upstream", &["upstream.tollgate.test"], 30);
    let tls_upstream = TlsUpstream::start(&upstream_files);
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let path = |p: &Path| p.display().to_string();
    let yaml = format!(
        r#"
listen: "{{listen}}"
threads: 1
grace_period: 5s
upgrade_sock: "{{dir}}/upgrade.sock"
tls:
  listen: "{https}"
  certificates:
    - {{ cert_path: "{api_cert}", key_path: "{api_key}", server_names: [{API}] }}
    - {{ cert_path: "{other_cert}", key_path: "{other_key}" }}
  client_ca_path: "{clients_ca}"
  hsts: "max-age=31536000; includeSubDomains"
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
store: {{ url: "sqlite://{{dir}}/tollgate.db" }}
oauth: {{ issuer: "https://{API}", signing_key_path: "{{dir}}/signing.pem" }}
permissions: [accounts:read]
# The attacks send hundreds of requests from one address.
rate_limits:
  tiers: {{ anonymous: {{ per_minute: 1000000, per_day: 10000000 }} }}
  burst: {{ requests: 1000000, per: 10s }}
upstreams:
  echo: {{ targets: ["{up}"] }}
  verified: {{ targets: ["{tls_up}"], tls: true, ca_path: "{upstream_ca}", sni: upstream.tollgate.test }}
  unverifiable: {{ targets: ["{tls_up}"], tls: true, sni: upstream.tollgate.test }}
routes:
  - {{ path_prefix: /v1/public, upstream: echo, anonymous: true }}
  - {{ path_prefix: /v1/accounts, upstream: echo, require: [accounts:read] }}
  - {{ path_prefix: /slow, upstream: echo, anonymous: true }}
  - {{ path_prefix: /verified, upstream: verified, anonymous: true }}
  - {{ path_prefix: /unverifiable, upstream: unverifiable, anonymous: true }}
"#,
        api_cert = path(&api_files.cert),
        api_key = path(&api_files.key),
        other_cert = path(&other.cert),
        other_key = path(&other.key),
        clients_ca = path(&clients_ca_path),
        upstream_ca = path(&upstream_ca_path),
        up = up.addr,
        tls_up = tls_upstream.addr,
    );
    let gw = Gateway::start(&yaml);
    Setup {
        gw,
        https,
        ca,
        client,
        other_client,
        rogue_client,
        api_files,
        server_ca,
        _tls_upstream: tls_upstream,
        _files: files,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_http2_on_one_gateway() {
    let up = upstream();
    let setup = setup(&up);
    let admin = Admin::of(&setup.gw);
    let (_, secret) = admin
        .create_key(serde_json::json!({"name": "tls", "permissions": ["accounts:read"]}))
        .await;

    both_protocols_over_tls_get_the_same_answers(&setup, &up, &secret);
    prior_knowledge_http2_on_the_plaintext_listener(&setup, &up);
    http2_heads_meet_the_limits_of_http1(&setup);
    http2_defences_hold(&setup);
    http2_framing_headers_are_refused(&setup, &up);
    http2_secrets_stay_out_of_logs_and_metrics(&setup, &secret);
    httpx_speaks_http2_over_tls(&setup);
    sni_picks_the_certificate_and_old_versions_are_refused(&setup);
    client_certificates_are_verified_and_forwarded(&setup, &up);
    keys_bound_to_a_client_certificate(&setup, &admin).await;
    upstream_certificates_are_verified(&setup);
    the_metrics_count_handshakes_protocols_and_expiry(&setup);
    certificates_reload_on_sighup_under_load(&setup).await;
}

fn both_protocols_over_tls_get_the_same_answers(setup: &Setup, up: &Upstream, secret: &str) {
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        up.recorder.clear();
        let answer = curl(&setup.ca, API, setup.https, "/v1/public/x", &[flag]);
        assert_eq!(
            (answer.status, answer.version.as_str()),
            (200, version),
            "{flag}: {}",
            answer.body
        );
        assert!(
            answer
                .headers
                .contains("strict-transport-security: max-age=31536000; includesubdomains"),
            "{flag}: {}",
            answer.headers
        );
        let seen = up.recorder.requests().pop().expect("forwarded");
        assert_eq!(seen.header("x-forwarded-proto"), ["https"], "{flag}");
        assert_eq!(
            seen.header("x-tollgate-auth-method"),
            ["anonymous"],
            "{flag}"
        );

        let key = format!("X-API-Key: {secret}");
        let answer = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/accounts/1",
            &[flag, "-H", &key],
        );
        assert_eq!(answer.status, 200, "{flag}: {}", answer.body);
        let seen = up.recorder.requests().pop().expect("forwarded");
        assert_eq!(seen.header("x-tollgate-auth-method"), ["api_key"], "{flag}");
        assert!(
            seen.header("x-api-key").is_empty(),
            "{flag}: the key was stripped"
        );

        let answer = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/accounts/1",
            &[flag, "-H", "X-API-Key: tg_live_wrong"],
        );
        assert_eq!(answer.status, 401, "{flag}");
        assert!(
            answer.body.contains("\"invalid_api_key\""),
            "{flag}: {}",
            answer.body
        );
        assert!(
            answer.headers.contains("strict-transport-security"),
            "{flag}: refusals too"
        );

        let answer = curl(&setup.ca, API, setup.https, "/v1/accounts/1", &[flag]);
        assert_eq!(answer.status, 401, "{flag}");
        assert!(
            answer.body.contains("\"missing_credentials\""),
            "{flag}: {}",
            answer.body
        );
    }
}

fn prior_knowledge_http2_on_the_plaintext_listener(setup: &Setup, up: &Upstream) {
    up.recorder.clear();
    let answer = curl(
        &setup.ca,
        "localhost",
        setup.gw.addr,
        "/v1/public/h2c",
        &["--http2-prior-knowledge"],
    );
    assert_eq!(
        (answer.status, answer.version.as_str()),
        (200, "2"),
        "{}",
        answer.body
    );
    assert!(
        !answer.headers.contains("strict-transport-security"),
        "no HSTS in plaintext"
    );
    let seen = up.recorder.requests().pop().expect("forwarded");
    assert_eq!(seen.header("x-forwarded-proto"), ["http"]);
    // HTTP/1.1 on the same listener is untouched, including a head shorter than the
    // HTTP/2 preface and one that starts like it.
    let answer = curl(
        &setup.ca,
        "localhost",
        setup.gw.addr,
        "/v1/public/h1",
        &["--plain", "--http1.1"],
    );
    assert_eq!((answer.status, answer.version.as_str()), (200, "1.1"));
    let short = raw_request(setup.gw.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(short.starts_with("HTTP/1.1 "), "{short}");
    let post = raw_request(
        setup.gw.addr,
        b"POST /v1/public/p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 200"), "{post}");
    let pri = raw_request(
        setup.gw.addr,
        b"PRI / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(pri.starts_with("HTTP/1.1 4"), "{pri}");
}

/// Sends `bytes` and reads the answer until the server closes or 5 s pass.
fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn http2_heads_meet_the_limits_of_http1(setup: &Setup) {
    let big = format!("X-Big: {}", "b".repeat(40 * 1024));
    let answer = curl(
        &setup.ca,
        API,
        setup.https,
        "/v1/public/big",
        &["--http2", "-H", &big],
    );
    assert_eq!(answer.status, 431, "{}", answer.body);
    assert!(
        answer.body.contains("\"headers_too_large\""),
        "{}",
        answer.body
    );

    let mut many = vec!["--http2"];
    let headers: Vec<String> = (0..101).map(|i| format!("X-H{i}: {i}")).collect();
    for header in &headers {
        many.extend(["-H", header.as_str()]);
    }
    let answer = curl(&setup.ca, API, setup.https, "/v1/public/many", &many);
    assert_eq!(answer.status, 431, "{}", answer.body);
    assert!(
        answer.body.contains("\"headers_too_large\""),
        "{}",
        answer.body
    );

    let long = format!("/v1/public/{}", "u".repeat(9 * 1024));
    let answer = curl(&setup.ca, API, setup.https, &long, &["--http2"]);
    assert_eq!(answer.status, 414, "{}", answer.body);
    assert!(answer.body.contains("\"uri_too_long\""), "{}", answer.body);

    // Beyond what h2 reads for one header block (64 KiB), h2 ends the connection with
    // GOAWAY: no answer at all, and nothing forwarded.
    let huge = format!("X-Huge: {}", "h".repeat(80 * 1024));
    let answer = curl(
        &setup.ca,
        API,
        setup.https,
        "/v1/public/huge",
        &["--http2", "-H", &huge],
    );
    assert_eq!(answer.status, 0, "{}", answer.body);
    // The gateway is fine afterwards.
    let answer = curl(
        &setup.ca,
        API,
        setup.https,
        "/v1/public/after",
        &["--http2"],
    );
    assert_eq!(answer.status, 200);
}

/// The Python environment `.ci/deps.sh test` makes, with h2 and httpx.
fn python() -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/py/bin/python");
    assert!(
        local.exists(),
        "the Python clients are missing: run `.ci/deps.sh test` (make test does)"
    );
    local
}

/// Runs tests/h2/attacks.py; its JSON answer.
fn attack(addr: SocketAddr, check: &str, tls: Option<(&Path, &str)>) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/h2/attacks.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .args(["127.0.0.1", &addr.port().to_string(), check]);
    if let Some((ca, name)) = tls {
        command.arg("--tls").arg(ca).arg(name);
    }
    let output = command.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{check}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{check}: {stdout}"))
}

fn http2_defences_hold(setup: &Setup) {
    let plain = setup.gw.addr;
    let settings = &attack(plain, "settings", None)["settings"];
    // SETTINGS_MAX_CONCURRENT_STREAMS (3), SETTINGS_MAX_HEADER_LIST_SIZE (6); the HPACK
    // table (1) is the protocol's 4 KiB, sent or implied.
    assert_eq!(settings["3"], 100, "{settings}");
    assert_eq!(settings["6"], 65536, "{settings}");
    assert!(settings["1"].as_u64().unwrap_or(4096) <= 4096, "{settings}");

    // Rapid reset (CVE-2023-44487): GOAWAY with ENHANCE_YOUR_CALM (0xb), on both listeners.
    for (addr, tls) in [
        (plain, None),
        (setup.https, Some((setup.ca.as_path(), API))),
    ] {
        let reset = attack(addr, "rapid_reset", tls);
        assert_eq!(reset["goaway"], 0xb, "{reset}");
        assert!(reset["responses"].as_u64().unwrap_or(0) < 500, "{reset}");
    }
    // A CONTINUATION flood is cut: GOAWAY, or the connection closed, long before the end.
    let flood = attack(plain, "continuation_flood", None);
    assert!(
        !flood["goaway"].is_null() || flood["closed"] == true,
        "{flood}"
    );
    // 150 slow streams at once: 100 are served, the rest refused (REFUSED_STREAM).
    let streams = attack(plain, "concurrent_streams", None);
    assert_eq!(streams["unfinished"], 0, "{streams}");
    assert!(
        streams["answered"].as_u64().unwrap_or(0) >= 100,
        "{streams}"
    );
    assert!(
        streams["answered"].as_u64().unwrap_or(0) + streams["refused"].as_u64().unwrap_or(0) >= 150,
        "{streams}"
    );
    assert!(streams["refused"].as_u64().unwrap_or(0) >= 1, "{streams}");
    // And the gateway serves on.
    let answer = curl(
        &setup.ca,
        API,
        setup.https,
        "/v1/public/after-attacks",
        &["--http2"],
    );
    assert_eq!(answer.status, 200);
}

/// What the smuggling tests send over HTTP/1.1 has no HTTP/2 form but one: the framing and
/// hop-by-hop headers RFC 9113 forbids. Each such stream is reset (PROTOCOL_ERROR), over
/// plaintext and TLS, and the upstream never sees it.
fn http2_framing_headers_are_refused(setup: &Setup, up: &Upstream) {
    for (addr, tls) in [
        (setup.gw.addr, None),
        (setup.https, Some((setup.ca.as_path(), API))),
    ] {
        up.recorder.clear();
        let answers = attack(addr, "forbidden_headers", tls);
        for name in ["transfer-encoding", "connection", "upgrade", "te"] {
            assert_eq!(answers["answers"][name], "reset 1", "{name}: {answers}");
        }
        let forwarded: Vec<String> = up
            .recorder
            .requests()
            .into_iter()
            .map(|r| r.uri)
            .filter(|uri| uri.contains("forbidden"))
            .collect();
        assert!(forwarded.is_empty(), "{forwarded:?}");
    }
}

/// The canary of the hostile-input tests, over HTTP/2: a key in every place a client can
/// put one is never in a log line or a metric, nor is the real key used over HTTP/2 above.
fn http2_secrets_stay_out_of_logs_and_metrics(setup: &Setup, secret: &str) {
    let canary = "tg_live_CanaryCanaryCanaryCanaryCanary12AbCdEf";
    let places: Vec<Vec<String>> = vec![
        vec!["-H".into(), format!("X-API-Key: {canary}")],
        vec!["-H".into(), format!("Authorization: Bearer {canary}")],
        vec!["-H".into(), format!("Cookie: session={canary}")],
    ];
    for place in &places {
        let args: Vec<&str> = std::iter::once("--http2")
            .chain(place.iter().map(String::as_str))
            .collect();
        let answer = curl(&setup.ca, API, setup.https, "/v1/accounts/1", &args);
        assert_eq!(answer.status, 401, "{}", answer.body);
        assert!(!answer.body.contains(canary));
    }
    for path in [
        format!("/v1/accounts/{canary}"),
        format!("/v1/accounts?api_key={canary}"),
    ] {
        let answer = curl(&setup.ca, API, setup.https, &path, &["--http2"]);
        assert_eq!(answer.status, 401, "{path}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let everything = setup.gw.stdout() + &setup.gw.stderr() + &setup.gw.scrape();
    assert!(!everything.contains(canary), "the canary leaked");
    assert!(
        !everything.contains("CanaryCanary"),
        "part of the canary leaked"
    );
    assert!(!everything.contains(secret), "a real key leaked");
    assert!(
        !everything.contains(&secret[8..]),
        "the secret part of a real key leaked"
    );
}

fn httpx_speaks_http2_over_tls(setup: &Setup) {
    // httpx resolves names itself: its network backend is pointed at the gateway, so the
    // name still goes out as SNI and :authority.
    let program = format!(
        r#"
import ssl, httpx, httpcore
ctx = ssl.create_default_context(cafile="{ca}")
class Resolve(httpcore.NetworkBackend):
    def __init__(self):
        self.inner = httpcore.SyncBackend()
    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return self.inner.connect_tcp("127.0.0.1", port, timeout, local_address, socket_options)
    def sleep(self, seconds):
        self.inner.sleep(seconds)
transport = httpx.HTTPTransport(http2=True, verify=ctx)
transport._pool._network_backend = Resolve()
with httpx.Client(transport=transport) as client:
    r = client.get("https://{API}:{port}/v1/public/httpx")
    print(r.http_version, r.status_code, r.json()["headers"]["x-forwarded-proto"])
"#,
        ca = setup.ca.display(),
        port = setup.https.port(),
    );
    let output = Command::new(python())
        .args(["-c", &program])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim(),
        "HTTP/2 200 https",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn sni_picks_the_certificate_and_old_versions_are_refused(setup: &Setup) {
    assert!(served_subject(setup.https, Some(API)).contains(API));
    assert!(served_subject(setup.https, Some(OTHER)).contains(OTHER));
    // From the certificate's own names: a one-label wildcard.
    assert!(served_subject(setup.https, Some("a.wild.tollgate.test")).contains(OTHER));
    assert!(served_subject(setup.https, Some("a.b.wild.tollgate.test")).contains(API));
    // No SNI, or an unknown name: the first certificate.
    assert!(served_subject(setup.https, None).contains(API));
    assert!(served_subject(setup.https, Some("unknown.test")).contains(API));

    let errors = |gw: &Gateway| {
        metric(
            &gw.scrape(),
            "tollgate_tls_handshakes_total{result=\"error\",version=\"unknown\"}",
        )
    };
    for version in ["-tls1", "-tls1_1"] {
        let before = errors(&setup.gw);
        // The client is made willing to offer the old version, so the refusal is the
        // gateway's.
        let (ok, text) = s_client(setup.https, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"]);
        assert!(!ok, "{version} was accepted:\n{text}");
        assert!(
            text.contains("Cipher is (NONE)"),
            "no cipher was agreed:\n{text}"
        );
        assert!(
            errors(&setup.gw) > before,
            "{version}: the gateway did not see a failed handshake:\n{text}"
        );
    }
    for version in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = s_client(setup.https, &[version, "-servername", API]);
        assert!(ok, "{version}:\n{text}");
    }
}

fn client_certificates_are_verified_and_forwarded(setup: &Setup, up: &Upstream) {
    let cert = setup.client.cert.display().to_string();
    let key = setup.client.key.display().to_string();
    for flag in ["--http1.1", "--http2"] {
        up.recorder.clear();
        let answer = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/public/mtls",
            &[flag, "--cert", &cert, "--key", &key],
        );
        assert_eq!(answer.status, 200, "{flag}: {}", answer.body);
        let seen = up.recorder.requests().pop().expect("forwarded");
        assert_eq!(
            seen.header("x-tollgate-client-cert-subject"),
            ["CN=svc-billing,O=Acme\\, Inc."],
            "{flag}"
        );
        assert_eq!(
            seen.header("x-tollgate-client-cert-sha256"),
            [pem_sha256(&setup.client.cert).as_str()],
            "{flag}"
        );
    }
    // Without a certificate the request is served, and a client cannot claim one.
    up.recorder.clear();
    let spoof = "X-Tollgate-Client-Cert-Sha256: 00ff";
    let answer = curl(
        &setup.ca,
        API,
        setup.https,
        "/v1/public/plain",
        &["-H", spoof],
    );
    assert_eq!(answer.status, 200);
    let seen = up.recorder.requests().pop().expect("forwarded");
    assert!(
        seen.header("x-tollgate-client-cert-sha256").is_empty(),
        "{:?}",
        seen.headers
    );
    assert!(seen.header("x-tollgate-client-cert-subject").is_empty());
    // A certificate from another CA does not get through the handshake.
    let rogue_cert = setup.rogue_client.cert.display().to_string();
    let rogue_key = setup.rogue_client.key.display().to_string();
    let answer = curl(
        &setup.ca,
        API,
        setup.https,
        "/v1/public/rogue",
        &["--cert", &rogue_cert, "--key", &rogue_key],
    );
    assert_eq!(answer.status, 0, "a rogue certificate was let through");
}

/// A key with `client_cert_sha256` works only over a connection that presents that
/// certificate, over HTTP/1.1 and HTTP/2.
async fn keys_bound_to_a_client_certificate(setup: &Setup, admin: &Admin) {
    let fingerprint = pem_sha256(&setup.client.cert);
    // The colon form openssl prints is accepted and kept as plain lowercase hex.
    let colons: Vec<String> = fingerprint
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect();
    let (status, key) = admin
        .post(
            "/keys",
            serde_json::json!({"name": "bound", "permissions": ["accounts:read"],
                "client_cert_sha256": colons.join(":")}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["client_cert_sha256"], fingerprint.as_str());
    let secret = key["key"].as_str().expect("secret").to_string();
    let header = format!("X-API-Key: {secret}");
    let files = |files: &CertFiles| {
        (
            files.cert.display().to_string(),
            files.key.display().to_string(),
        )
    };
    let (cert, cert_key) = files(&setup.client);
    let (other, other_key) = files(&setup.other_client);
    for flag in ["--http1.1", "--http2"] {
        let with = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/accounts/1",
            &[flag, "-H", &header, "--cert", &cert, "--key", &cert_key],
        );
        assert_eq!(with.status, 200, "{flag}: {}", with.body);
        let without = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/accounts/1",
            &[flag, "-H", &header],
        );
        assert_eq!(without.status, 403, "{flag}");
        assert!(
            without.body.contains("\"client_certificate_required\""),
            "{flag}: {}",
            without.body
        );
        let wrong = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/accounts/1",
            &[flag, "-H", &header, "--cert", &other, "--key", &other_key],
        );
        assert_eq!(
            wrong.status, 403,
            "{flag}: another certificate of the same CA"
        );
    }
    // Over plaintext there is no certificate at all.
    let plain = curl(
        &setup.ca,
        "localhost",
        setup.gw.addr,
        "/v1/accounts/1",
        &["--plain", "-H", &header],
    );
    assert_eq!(plain.status, 403);
    // Refusals of a fingerprint that is not one; null unbinds.
    let id = key["id"].as_str().expect("id");
    let (status, error) = admin
        .post(
            "/keys",
            serde_json::json!({"name": "x", "permissions": [], "client_cert_sha256": "abc"}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let (status, patched) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/keys/{id}"),
            Some(serde_json::json!({"client_cert_sha256": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched["client_cert_sha256"].is_null());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let unbound = curl(
            &setup.ca,
            API,
            setup.https,
            "/v1/accounts/1",
            &["-H", &header],
        );
        if unbound.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unbound key is still refused: {}",
            unbound.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn upstream_certificates_are_verified(setup: &Setup) {
    let answer = curl(&setup.ca, API, setup.https, "/verified", &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = curl(&setup.ca, API, setup.https, "/unverifiable", &[]);
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(
        answer.body.contains("\"upstream_unavailable\""),
        "{}",
        answer.body
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = setup.gw.stderr() + &setup.gw.stdout();
        let line = log
            .lines()
            .find(|line| line.contains("TLS to the upstream failed"));
        if let Some(line) = line {
            assert!(line.contains("unverifiable"), "{line}");
            assert!(
                line.contains("UnknownIssuer"),
                "the reason is given: {line}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line about the upstream's certificate:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn the_metrics_count_handshakes_protocols_and_expiry(setup: &Setup) {
    let scrape = setup.gw.scrape();
    assert!(
        metric(
            &scrape,
            "tollgate_tls_handshakes_total{result=\"ok\",version=\"1.3\"}"
        ) > 0.0,
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "tollgate_tls_handshakes_total{result=\"ok\",version=\"1.2\"}"
        ) > 0.0,
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "tollgate_http_requests_by_protocol_total{protocol=\"h2\"}"
        ) > 0.0,
        "{scrape}"
    );
    assert!(
        metric(
            &scrape,
            "tollgate_http_requests_by_protocol_total{protocol=\"http/1.1\"}"
        ) > 0.0,
        "{scrape}"
    );
    let expiry = metric(
        &scrape,
        &format!("tollgate_certificate_expiry_seconds{{server_name=\"{API}\"}}"),
    );
    let days = expiry / 86_400.0;
    assert!((89.0..=90.1).contains(&days), "{days} days left:\n{scrape}");
    let wildcard = metric(
        &scrape,
        "tollgate_certificate_expiry_seconds{server_name=\"*.wild.tollgate.test\"}",
    );
    assert!(wildcard > 0.0, "{scrape}");
}

/// A bad file keeps the certificate in use; a good one is served from the next handshake;
/// a keep-alive client sending all along never sees a failure.
async fn certificates_reload_on_sighup_under_load(setup: &Setup) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&setup.ca).expect("ca")).expect("pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve(API, setup.https)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("https://{API}:{}/v1/public/load", setup.https.port());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => ok += 1,
                    Ok(response) => failed.push(response.status().to_string()),
                    Err(error) => failed.push(error.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let reloads = |result: &str| {
        metric(
            &setup.gw.scrape(),
            &format!("tollgate_tls_reloads_total{{result=\"{result}\"}}"),
        )
    };
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &setup.gw.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}:\n{}", setup.gw.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let good = std::fs::read(&setup.api_files.cert).expect("cert");
    std::fs::write(&setup.api_files.cert, "not a certificate").expect("write");
    hup();
    wait_for("the failed reload was not counted", &|| {
        reloads("error") >= 1.0
    });
    let log = setup.gw.stderr() + &setup.gw.stdout();
    assert!(
        log.contains("api.pem"),
        "the failure names the file:\n{log}"
    );
    assert!(
        served_subject(setup.https, Some(API)).contains(API),
        "the old certificate stays"
    );
    std::fs::write(&setup.api_files.cert, good).expect("restore");

    // A new certificate, valid 30 days instead of 90.
    let dir = setup.api_files.cert.parent().expect("dir");
    let renewed = setup.server_ca.server(dir, "renewed", &[API], 30);
    std::fs::copy(&renewed.cert, &setup.api_files.cert).expect("copy");
    std::fs::copy(&renewed.key, &setup.api_files.key).expect("copy");
    hup();
    wait_for("the reload was not counted", &|| reloads("ok") >= 1.0);
    let days = metric(
        &setup.gw.scrape(),
        &format!("tollgate_certificate_expiry_seconds{{server_name=\"{API}\"}}"),
    ) / 86_400.0;
    assert!(
        (29.0..=30.1).contains(&days),
        "{days} days left after the reload"
    );
    let (_, text) = s_client(setup.https, &["-servername", API, "-showcerts"]);
    assert!(
        text.contains(
            &std::fs::read_to_string(&renewed.cert)
                .expect("pem")
                .lines()
                .nth(1)
                .expect("line")
                .to_string()
        ),
        "the renewed certificate is served"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.expect("load task");
    assert!(ok > 50, "only {ok} requests during the reloads");
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[test]
fn an_https_only_gateway_with_tls_1_3_as_the_floor() {
    let up = upstream();
    let files = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("floor CA");
    let ca_path = ca.write(files.path(), "ca");
    let cert = ca.server(files.path(), "api", &[API], 10);
    let yaml = format!(
        r#"
threads: 1
upgrade_sock: "{{dir}}/upgrade.sock"
tls:
  listen: "{{listen}}"
  certificates: [{{ cert_path: "{cert}", key_path: "{key}" }}]
  min_version: "1.3"
  http2: false
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
store: {{ url: "sqlite://{{dir}}/tollgate.db" }}
oauth: {{ issuer: "https://{API}", signing_key_path: "{{dir}}/signing.pem" }}
upstreams:
  echo: {{ targets: ["{up}"] }}
routes:
  - {{ path_prefix: /v1/public, upstream: echo, anonymous: true }}
"#,
        cert = cert.cert.display(),
        key = cert.key.display(),
        up = up.addr,
    );
    let gw = Gateway::start(&yaml);
    let (ok, text) = s_client(gw.addr, &["-tls1_2", "-servername", API]);
    assert!(!ok, "TLS 1.2 was accepted under a 1.3 floor:\n{text}");
    let (ok, text) = s_client(gw.addr, &["-tls1_3", "-servername", API]);
    assert!(ok, "{text}");
    // ALPN without h2: curl asking for HTTP/2 gets HTTP/1.1.
    let answer = curl(&ca_path, API, gw.addr, "/v1/public/x", &["--http2"]);
    assert_eq!((answer.status, answer.version.as_str()), (200, "1.1"));
    // Plaintext HTTP on the HTTPS port gets no answer, and the gateway carries on.
    let plain = raw_request(gw.addr, b"GET /v1/public/x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!plain.contains("200"), "{plain}");
    let answer = curl(&ca_path, API, gw.addr, "/v1/public/x", &[]);
    assert_eq!(answer.status, 200);
}

#[test]
fn a_bad_certificate_stops_the_start_naming_the_file() {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("start CA");
    let one = ca.server(files.path(), "one", &[API], 10);
    let two = ca.server(files.path(), "two", &[OTHER], 10);
    let port = free_port();
    let cases = [
        (one.cert.clone(), two.key.clone(), "two.key does not match"),
        (
            files.path().join("absent.pem"),
            one.key.clone(),
            "absent.pem: cannot read",
        ),
    ];
    for (cert, key, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tollgate.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
upgrade_sock: "{dir}/upgrade.sock"
tls:
  listen: "127.0.0.1:{port}"
  certificates: [{{ cert_path: "{cert}", key_path: "{key}" }}]
admin: {{ listen: "127.0.0.1:{admin}" }}
metrics: {{ listen: "127.0.0.1:{metrics}" }}
store: {{ url: "sqlite://{dir}/tollgate.db" }}
upstreams:
  echo: {{ targets: ["127.0.0.1:9"] }}
routes:
  - {{ path_prefix: /, upstream: echo, anonymous: true }}
"#,
                dir = dir.path().display(),
                cert = cert.display(),
                key = key.display(),
                admin = free_port(),
                metrics = free_port(),
            ),
        )
        .expect("config");
        let output = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with {expected}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens"
        );
    }
}

#[test]
fn check_matches_keys_to_certificates_and_warns_of_expiry() {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("check CA");
    let soon = ca.server(files.path(), "soon", &[API], 7);
    let later = ca.server(files.path(), "later", &[OTHER], 60);
    let run = |cert: &Path, key: &Path| {
        let config = files.path().join("check.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
tls:
  listen: "127.0.0.1:8443"
  certificates:
    - {{ cert_path: "{cert}", key_path: "{key}" }}
    - {{ cert_path: "{later_cert}", key_path: "{later_key}" }}
upstreams:
  echo: {{ targets: ["127.0.0.1:9"] }}
routes:
  - {{ path_prefix: /, upstream: echo, anonymous: true }}
"#,
                cert = cert.display(),
                key = key.display(),
                later_cert = later.cert.display(),
                later_key = later.key.display(),
            ),
        )
        .expect("config");
        let output = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("run");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&soon.cert, &soon.key);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("tls.certificates[0]")
            && (stderr.contains("soon.pem expires in 6 day(s)")
                || stderr.contains("soon.pem expires in 7 day(s)")),
        "{stderr}"
    );
    assert!(!stderr.contains("later.pem"), "{stderr}");
    let (ok, stderr) = run(&soon.cert, &later.key);
    assert!(!ok);
    assert!(
        stderr.contains("later.key does not match the certificate in"),
        "{stderr}"
    );
}

/// A process that is killed when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_admin_api_and_console_over_https_set_secure_cookies() {
    let up = upstream();
    let files = tempfile::tempdir().expect("tempdir");
    let dir = files.path();
    let ca = TestCa::new("admin CA");
    let ca_path = ca.write(dir, "ca");
    let cert = ca.server(dir, "admin", &["127.0.0.1"], 30);
    let (listen, admin, metrics) = (free_port(), free_port(), free_port());
    let config = dir.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: "127.0.0.1:{listen}"
threads: 1
upgrade_sock: "{dir}/upgrade.sock"
admin:
  listen: "127.0.0.1:{admin}"
  tls: {{ cert_path: "{cert}", key_path: "{key}" }}
metrics: {{ listen: "127.0.0.1:{metrics}" }}
store: {{ url: "sqlite://{dir}/tollgate.db" }}
oauth: {{ issuer: "http://127.0.0.1:{listen}", signing_key_path: "{dir}/signing.pem" }}
upstreams:
  echo: {{ targets: ["{up}"] }}
routes:
  - {{ path_prefix: /v1/public, upstream: echo, anonymous: true }}
"#,
            dir = dir.display(),
            cert = cert.cert.display(),
            key = cert.key.display(),
            up = up.addr,
        ),
    )
    .expect("config");
    let password = "correct horse battery staple";
    let made = Command::new(BIN)
        .args(["bootstrap", "--email", "owner@example.com", "--config"])
        .arg(&config)
        .env("TOLLGATE_OWNER_PASSWORD", password)
        .output()
        .expect("bootstrap");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let log = std::fs::File::create(dir.join("stderr.log")).expect("log");
    let _gateway = Running(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("serve"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&ca_path, "127.0.0.1", addr, "/readyz", &[]).status != 200 {
        assert!(
            Instant::now() < deadline,
            "the admin listener never answered over HTTPS:\n{}",
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = format!(r#"{{"email":"owner@example.com","password":"{password}"}}"#);
    let signed_in = curl(
        &ca_path,
        "127.0.0.1",
        addr,
        "/admin/v1/session",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
        ],
    );
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in
        .headers
        .lines()
        .find(|line| line.starts_with("set-cookie:"))
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("; secure"), "{cookie}");
    assert!(cookie.contains("httponly"), "{cookie}");
    let console = curl(&ca_path, "127.0.0.1", addr, "/console/", &[]);
    assert!(matches!(console.status, 200 | 303), "{}", console.status);
    // Plaintext on the HTTPS admin port gets no answer.
    let plain = raw_request(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!plain.contains("200"), "{plain}");
}

/// `http2: true` toward an upstream that speaks it: Caddy over TLS with a certificate for
/// its IP address, so the IP-target path (no SNI, the address checked against the
/// certificate) is exercised too. Caddy answers with the protocol it was spoken to in.
#[test]
fn an_upstream_is_reached_over_http2_when_asked() {
    let files = tempfile::tempdir().expect("tempdir");
    let dir = files.path();
    let ca = TestCa::new("upstream h2 CA");
    let ca_path = ca.write(dir, "ca");
    let cert = ca.server(dir, "caddy", &["127.0.0.1"], 30);
    let port = free_port();
    let caddyfile = dir.join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n  auto_https off\n  admin off\n}}\nhttps://:{port} {{\n  tls {cert} {key}\n  respond \"proto={{http.request.proto}}\" 200\n}}\n",
            cert = cert.cert.display(),
            key = cert.key.display(),
        ),
    )
    .expect("Caddyfile");
    let _caddy = Running(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "caddy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let yaml = format!(
        r#"
listen: "{{listen}}"
threads: 1
upgrade_sock: "{{dir}}/upgrade.sock"
admin: {{ listen: "{{admin}}" }}
metrics: {{ listen: "{{metrics}}" }}
store: {{ url: "sqlite://{{dir}}/tollgate.db" }}
oauth: {{ issuer: "http://{{listen}}", signing_key_path: "{{dir}}/signing.pem" }}
upstreams:
  h2: {{ targets: ["127.0.0.1:{port}"], tls: true, ca_path: "{ca}", http2: true }}
  h1: {{ targets: ["127.0.0.1:{port}"], tls: true, ca_path: "{ca}" }}
routes:
  - {{ path_prefix: /h2, upstream: h2, anonymous: true }}
  - {{ path_prefix: /h1, upstream: h1, anonymous: true }}
"#,
        ca = ca_path.display(),
    );
    let gw = Gateway::start(&yaml);
    for (path, expected) in [("/h2", "proto=HTTP/2.0"), ("/h1", "proto=HTTP/1.1")] {
        let answer = http_get(gw.addr, path).expect("answer");
        assert_eq!(
            answer.status,
            200,
            "{path}: {}\n{}",
            answer.body,
            gw.stderr()
        );
        assert_eq!(answer.body, expected, "{path}: {}", answer.head);
    }
}
