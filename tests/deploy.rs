//! The deployment examples: every tollgate config inside them passes `tollgate check`,
//! and the manifests hold what a replicated deployment needs.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(config: &Path) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env(
            "TOLLGATE_DATABASE_URL",
            "postgres://tollgate:secret@db.internal:5432/tollgate",
        )
        .env("TOLLGATE_REDIS_URL", "redis://redis.internal:6379")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the variables, the check names what is missing.
    let missing = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env_remove("TOLLGATE_DATABASE_URL")
        .env_remove("TOLLGATE_REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("TOLLGATE_DATABASE_URL is not set"));
}

fn documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

#[test]
fn the_kubernetes_example_is_complete_and_its_config_checks() {
    let dir = root().join("deploy/kubernetes");
    let mut kinds = Vec::new();
    let mut config = None;
    let mut deployment = None;
    for entry in std::fs::read_dir(&dir).unwrap() {
        for doc in documents(&entry.unwrap().path()) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            if kind == "ConfigMap" {
                config = doc["data"]["tollgate.yaml"].as_str().map(str::to_string);
            }
            if kind == "Deployment" {
                deployment = Some(doc.clone());
            }
            kinds.push(kind);
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Secret",
            "Service"
        ]
    );
    let deployment = deployment.unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let mounts = &container["volumeMounts"];
    assert!(
        mounts
            .as_sequence()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/etc/tollgate/tls"),
        "the TLS Secret is mounted"
    );
    // The TLS Secret's files, as the kubelet mounts them, made here.
    let temp = tempfile::tempdir().unwrap();
    let tls = temp.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    keygen_tls(&tls.join("tls.pem"));
    std::fs::rename(tls.join("tls.pem"), tls.join("tls.crt")).unwrap();
    let config = config
        .unwrap()
        .replace("/etc/tollgate/tls/", &format!("{}/", tls.display()));
    let path = temp.path().join("tollgate.yaml");
    std::fs::write(&path, config).unwrap();
    check(&path);
}

/// `tollgate keygen --tls-names`, as the compose example's keys service runs it.
fn keygen_tls(out: &Path) {
    let made = Command::new(BIN)
        .args(["keygen", "--tls-names", "localhost,127.0.0.1", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // Never over an existing file.
    let again = Command::new(BIN)
        .args(["keygen", "--tls-names", "localhost", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

#[test]
fn the_compose_example_runs_three_replicas_and_its_config_checks() {
    let compose = &documents(&root().join("deploy/compose/docker-compose.yml"))[0];
    let services = compose["services"].as_mapping().unwrap();
    for name in [
        "tollgate-1",
        "tollgate-2",
        "tollgate-3",
        "postgres",
        "redis",
    ] {
        assert!(services.contains_key(name), "{name}");
    }
    // The keys service's files, made the way it makes them.
    let keys = tempfile::tempdir().unwrap();
    keygen_tls(&keys.path().join("tls.pem"));
    let config = std::fs::read_to_string(root().join("deploy/compose/tollgate.yaml"))
        .unwrap()
        .replace("/keys/tls.", &format!("{}/tls.", keys.path().display()));
    let path = keys.path().join("tollgate.yaml");
    std::fs::write(&path, config).unwrap();
    check(&path);
}

#[test]
fn the_docker_image_builds_when_an_engine_is_available() {
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|out| out.status.success()) {
        println!("skipped: no Docker engine here (`docker info` failed); deploy/docker/Dockerfile is built by CI runners that have one");
        return;
    }
    let status = Command::new("docker")
        .args([
            "build",
            "-f",
            "deploy/docker/Dockerfile",
            "-t",
            "tollgate:test",
            ".",
        ])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    // The built image runs as the non-root user, with the health check.
    let inspected = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Healthcheck}}",
            "tollgate:test",
        ])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&inspected.stdout);
    assert!(config.starts_with("10001 "), "{config}");
    assert!(config.contains("/healthz"), "{config}");
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_health_checked() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    assert!(
        instructions
            .iter()
            .any(|l| l.starts_with("FROM debian:") && l.contains("slim")),
        "a slim runtime image"
    );
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER instruction");
    assert!(user != "0" && user != "root", "runs as {user}");
    let health = instructions
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/") && ignore.lines().any(|l| l == ".git/"));
}
