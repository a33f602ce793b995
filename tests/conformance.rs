//! The admin API against its own OpenAPI document, by an independent client: schemathesis
//! (from PyPI, installed by `make test`) generates valid and invalid requests for every
//! operation, with the bootstrap token, and checks each answer: no server error, a
//! documented status and content type, a body that fits its schema, invalid input refused,
//! auth that is not ignored, resources that exist after they are created.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

fn schemathesis() -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/py/bin/schemathesis");
    if local.exists() {
        return local;
    }
    let on_path = Command::new("schemathesis").arg("--version").output();
    assert!(
        on_path.is_ok_and(|out| out.status.success()),
        "schemathesis is missing: run `.ci/deps.sh test` (make test does)"
    );
    PathBuf::from("schemathesis")
}

#[test]
fn the_admin_api_conforms_to_its_openapi_document() {
    let up = upstream();
    let config = credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live").replace(
        "admin: { listen: \"{admin}\" }",
        "admin:\n  listen: \"{admin}\"\n  roles:\n    support: [keys:read, analytics:read]",
    );
    let gw = Gateway::start(&config);
    // Every check but one: "a schema-valid request is accepted" cannot hold for rules a
    // JSON Schema does not express (a permission the config declares, an opaque cursor
    // this API issued, an Idempotency-Key reused with another body), which are refused
    // with 400 or 422 as they should be.
    let out = Command::new(schemathesis())
        .arg("run")
        .arg(gw.admin_url("/admin/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "30", "--seed", "4", "--workers", "2"])
        .args(["--request-timeout", "20"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.contains("SUMMARY"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Tested: 45"), "{stdout}");
    let stderr = gw.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
