//! Starting and stopping: a process that cannot have one of its addresses says which and
//! exits 1 at once, never half-starts and never shares a port with another process; an
//! upgrade takes every socket over by descriptor transfer and logs no error; an idle
//! gateway stops at once.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `config` run as `tollgate serve`; its exit code, stderr and how long it ran.
fn serve_to_exit(config: &std::path::Path) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after 20 s:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_refuses_an_address_another_process_holds() {
    let up = upstream();
    let first = Gateway::start(&basic_config(&up));
    let (_, key) = Admin::of(&first)
        .create_key(serde_json::json!({"name": "first", "permissions": ["accounts:read"]}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let free = || format!("127.0.0.1:{}", free_port());
    for (setting, taken) in [
        ("listen", first.addr),
        ("admin.listen", first.admin),
        ("metrics.listen", first.metrics),
    ] {
        let address = |name: &str| {
            if name == setting {
                taken.to_string()
            } else {
                free()
            }
        };
        let config = basic_config(&up)
            .replace("{listen}", &address("listen"))
            .replace("{admin}", &address("admin.listen"))
            .replace("{metrics}", &address("metrics.listen"))
            .replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("second.yaml");
        write_file(&path, &config);
        let (code, stderr, took) = serve_to_exit(&path);
        assert_eq!(code, Some(1), "{setting}: {stderr}");
        assert!(
            took < Duration::from_secs(5),
            "{setting}: took {took:?} to give up"
        );
        let line = format!("error: {setting}: cannot listen on {taken}: the address is in use");
        assert!(stderr.contains(&line), "{setting}: {stderr}");
        // It announced nothing: no "serving" line, and no store or signing key made.
        assert!(!stderr.contains("tollgate serving"), "{stderr}");
        assert!(!dir.path().join("tollgate.db").exists());
        assert!(!dir.path().join("signing.pem").exists());
    }
    // The first process kept every port to itself: each of many admin calls reaches it,
    // and its data plane and metrics answer.
    for _ in 0..20 {
        let (status, listed) = Admin::of(&first).get("/keys").await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    }
    let allowed = raw(
        first.addr,
        format!("GET /v1/accounts HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\n\r\n").as_bytes(),
    );
    assert_eq!(allowed.status, 200);
    assert!(first.scrape().contains("tollgate_build_info"));

    // The demo says which of its flags names the taken address.
    let demo = Command::new(BIN)
        .args(["demo", "--admin-listen", &first.admin.to_string()])
        .args(["--listen", &free(), "--metrics-listen", &free()])
        .args(["--upstream-listen", &free()])
        .output()
        .unwrap();
    assert_eq!(demo.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&demo.stderr);
    assert!(
        stderr.contains(&format!("--admin-listen: cannot listen on {}", first.admin)),
        "{stderr}"
    );
}

fn quit(pid: u32) {
    Command::new("kill")
        .args(["-QUIT", &pid.to_string()])
        .status()
        .unwrap();
}

fn gone(pid: u32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    state.is_empty() || state.split_whitespace().nth(2) == Some("Z")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_takes_every_socket_over_and_logs_no_error() {
    let up = upstream();
    // The default log filter (RUST_LOG empty), as a user runs it.
    let mut old = Gateway::start_with_env(&basic_config(&up), &[("RUST_LOG", String::new())]);
    let sock = old.dir.path().join("upgrade.sock");
    let _ = std::fs::remove_file(&sock);
    let new_log = old.dir.path().join("new.log");
    let mut new = Command::new(BIN)
        .args(["serve", "--upgrade", "--config"])
        .arg(&old.config_path)
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&new_log).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no upgrade socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Waiting for the old process's sockets is the new one's job, not an error: let it
    // wait a few seconds before the old one hands them over.
    std::thread::sleep(Duration::from_millis(2_500));
    let old_pid = old.pid();
    quit(old_pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(old_pid) {
        assert!(Instant::now() < deadline, "the old process never exited");
        // A new connection each time: whichever process accepts it answers.
        let (status, body) = Admin::of(&old).get("/keys").await;
        assert_eq!(status, 200, "the admin API answers throughout: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin = Admin::of(&old);
    // The new process has every socket, by transfer: admin, metrics and data plane answer.
    assert_eq!(admin.get("/keys").await.0, 200);
    assert!(old.scrape().contains("tollgate_build_info"));
    assert_eq!(http_get(old.addr, "/v1/public/x").unwrap().status, 200);
    assert!(new.try_wait().unwrap().is_none(), "the new process runs on");
    // And holds them alone: a third process cannot bind the admin address.
    let third = old.dir.path().join("third.yaml");
    let config = std::fs::read_to_string(&old.config_path)
        .unwrap()
        .replace(&old.addr.to_string(), &format!("127.0.0.1:{}", free_port()))
        .replace(
            &old.metrics.to_string(),
            &format!("127.0.0.1:{}", free_port()),
        );
    write_file(&third, &config);
    let (code, stderr, _) = serve_to_exit(&third);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("admin.listen: cannot listen on"),
        "{stderr}"
    );

    let logs = [old.stderr(), std::fs::read_to_string(&new_log).unwrap()];
    for log in &logs {
        assert!(
            !log.contains(" ERROR "),
            "an ERROR line in a normal upgrade:\n{log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "colour codes in a log file:\n{log}"
        );
    }
    // The dead upstream's target is reported in one short line: the target and the cause.
    let unhealthy = logs[0]
        .lines()
        .find(|line| line.contains("unhealthy"))
        .expect("the dead target is reported")
        .to_string();
    assert!(
        unhealthy.contains("target=127.0.0.1:1") && unhealthy.contains("cause="),
        "{unhealthy}"
    );
    assert!(
        unhealthy.len() < 300 && !unhealthy.contains("PeerOptions"),
        "{unhealthy}"
    );
    old.kill();
    let _ = new.kill();
    let _ = new.wait();
}

#[test]
fn an_idle_gateway_stops_at_once_on_sigint() {
    let up = upstream();
    let mut gw = Gateway::start(&basic_config(&up));
    // One request first, so the usage and quota writers have work to finish.
    assert_eq!(http_get(gw.addr, "/v1/public/x").unwrap().status, 200);
    let started = Instant::now();
    assert_eq!(gw.signal_and_wait("INT", Duration::from_secs(10)), Some(0));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?} to stop");
}

/// A GitHub public-keys file that cannot be read or is not GitHub's stops the start, and
/// `tollgate check` names it; nothing half-starts.
#[test]
fn a_bad_github_keys_file_stops_the_start_and_check_names_it() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("github-keys.json");
    std::fs::write(
        &keys,
        "{\"public_keys\": [{\"key_identifier\": \"a\", \"key\": \"not a key\"}]}",
    )
    .unwrap();
    let config = dir.path().join("tollgate.yaml");
    let yaml = basic_config(&up)
        .replace("{listen}", &format!("127.0.0.1:{}", free_port()))
        .replace("{admin}", &format!("127.0.0.1:{}", free_port()))
        .replace("{metrics}", &format!("127.0.0.1:{}", free_port()))
        .replace("{dir}", &dir.path().display().to_string())
        + &format!(
            "leak_reports: {{ github_public_keys_path: \"{}\" }}\n",
            keys.display()
        );
    std::fs::write(&config, yaml).unwrap();
    let (code, stderr, _) = serve_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("leak_reports.github_public_keys_path") && stderr.contains("PUBLIC KEY"),
        "{stderr}"
    );
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(said.contains("github-keys.json"), "{said}");
}
