//! `tollgate demo` starts an echo API and the gateway with a key, answers as its tour says,
//! and stops cleanly on Ctrl-C.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_starts_answers_and_stops_on_ctrl_c() {
    let ports: Vec<String> = (0..5)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", &ports[0], "--admin-listen", &ports[1]])
        .args([
            "--metrics-listen",
            &ports[2],
            "--upstream-listen",
            &ports[3],
            "--https-listen",
            &ports[4],
        ])
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gateway = ports[0].parse().unwrap();
    let admin = ports[1].parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Ready means the snapshot is loaded; the proxy listener binds on its own schedule.
    while http_get(admin, "/readyz").is_none_or(|r| r.status != 200)
        || std::net::TcpStream::connect(gateway).is_err()
    {
        assert!(Instant::now() < deadline, "demo did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let public = http_get(gateway, "/v1/public/hello").expect("answer");
    assert_eq!(public.status, 200);
    assert_eq!(public.json()["path"], "/v1/public/hello");
    let protected = http_get(gateway, "/v1/accounts").unwrap();
    assert_eq!(
        (protected.status, protected.code().as_str()),
        (401, "missing_credentials")
    );

    // The key the tour prints works as the tour says.
    let out = std::fs::read_to_string(&out_path).unwrap();
    let key = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("KEY="))
        .expect("the tour prints a key")
        .to_string();
    let request = |method: &str, header: String| {
        format!("{method} /v1/accounts HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n").into_bytes()
    };
    let allowed = raw(gateway, &request("GET", format!("X-API-Key: {key}")));
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.json()["headers"]["x-tollgate-permissions"],
        "accounts:read"
    );
    let write = raw(
        gateway,
        &request("POST", format!("Authorization: Bearer {key}")),
    );
    assert_eq!(
        (write.status, write.code().as_str()),
        (403, "insufficient_permission")
    );
    let elsewhere = raw_from(
        "127.0.0.2",
        gateway,
        &request("GET", format!("X-API-Key: {key}")),
    );
    assert_eq!(
        (elsewhere.status, elsewhere.code().as_str()),
        (403, "ip_not_allowed")
    );
    // The HTTPS line of the tour, as printed, with the demo's own certificate.
    let https_line = out
        .lines()
        .find(|l| l.contains("--http2 --cacert"))
        .expect("the tour prints an HTTPS line");
    let cacert = https_line
        .split("--cacert ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    let port = ports[4].rsplit(':').next().unwrap();
    assert!(
        https_line.contains(&format!("https://localhost:{port}/v1/accounts")),
        "{https_line}"
    );
    let over_https = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            cacert,
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(["-H", &format!("X-API-Key: {key}")])
        .arg(format!("https://localhost:{port}/v1/accounts"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&over_https.stdout);
    assert!(
        text.ends_with("\n2 200"),
        "{text}{}",
        String::from_utf8_lossy(&over_https.stderr)
    );
    assert!(text.contains("\"x-forwarded-proto\":\"https\""), "{text}");
    // The client-credentials line of the tour.
    let client_id = out
        .split("curl -s -u ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("the tour prints a client-credentials line")
        .to_string();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{client_id}:{key}"),
    );
    let body = "grant_type=client_credentials";
    let token = raw(
        gateway,
        format!(
            "POST /oauth/token HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(token.status, 200, "{token:?}");
    let access = token.json()["access_token"].as_str().unwrap().to_string();
    let with_token = raw(
        gateway,
        &request("GET", format!("Authorization: Bearer {access}")),
    );
    assert_eq!(with_token.status, 200);
    assert_eq!(
        with_token.json()["headers"]["x-tollgate-auth-method"],
        "oauth"
    );
    // The rate-limit loop of the tour: five allowed in 10 s, then 429 (one was used above).
    // Windows are aligned to the clock: start the loop well inside one.
    while tollgate::clock::now_ms().rem_euclid(10_000) > 7_000 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let statuses: Vec<u16> = (0..6)
        .map(|_| http_get(gateway, "/v1/public/hello").unwrap().status)
        .collect();
    // (The request above may sit in an earlier window, so at least one refusal, never an
    // error.)
    assert!(
        statuses.contains(&429) && statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(out.contains("for i in 1 2 3 4 5 6 7"));
    for line in [
        "--interface 127.0.0.2",
        "-X POST",
        "X-API-Key: $KEY",
        "tollgate keys list",
    ] {
        assert!(out.contains(line), "the tour should show `{line}`:\n{out}");
    }

    // The tour prints a demo owner who can sign in.
    let password = out
        .lines()
        .find(|l| l.trim_start().starts_with("console   http://"))
        .and_then(|l| l.split("demo@tollgate.local, password ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the tour prints the console and the demo owner")
        .to_string();
    assert!(out.contains(&format!("http://{admin}/console/")), "{out}");
    let body = format!("{{\"email\": \"demo@tollgate.local\", \"password\": \"{password}\"}}");
    let signed_in = raw(
        admin,
        format!(
            "POST /admin/v1/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    assert_eq!(signed_in.json()["operator"]["role"], "owner");
    // Its store and signing key sit in a temp folder, removed on Ctrl-C; with nothing in
    // flight it stops at once.
    let folder = std::env::temp_dir().join(format!("tollgate-demo-{}", child.id()));
    assert!(folder.join("tollgate.db").exists(), "{}", folder.display());
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let asked = Instant::now();
    let deadline = asked + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "stopping took {:?}",
        asked.elapsed()
    );
    assert!(!folder.exists(), "{} was left behind", folder.display());
    assert!(
        out.contains(&format!("curl -i http://{}/v1/public/hello", ports[0])),
        "{out}"
    );
}
