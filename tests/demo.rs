//! `tollgate demo` starts an echo API and the gateway, answers, and stops cleanly on Ctrl-C.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_starts_answers_and_stops_on_ctrl_c() {
    let ports: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", &ports[0], "--admin-listen", &ports[1]])
        .args([
            "--metrics-listen",
            &ports[2],
            "--upstream-listen",
            &ports[3],
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gateway = ports[0].parse().unwrap();
    let admin = ports[1].parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(admin, "/readyz").is_none_or(|r| r.status != 200) {
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

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        out.contains(&format!("curl -i http://{}/v1/public/hello", ports[0])),
        "{out}"
    );
}
