//! Entry points for the fuzz targets in `fuzz/` (and the corpus replay in `tests/`): each
//! takes arbitrary bytes to a parser that faces the network or an operator, and checks
//! the invariants that must hold whatever the input.

use crate::config::{Config, Environment};
use crate::decision::{bearer_token, presented, RequestFacts};
use http::Method;
use std::net::IpAddr;

/// The key parser: never panics; whatever passes is exactly a well-formed key.
pub fn key_parser(data: &[u8]) {
    if crate::auth::api_key::check_format(data, "tg", Environment::Live).is_ok() {
        assert!(data.starts_with(b"tg_live_") && data.len() == 46);
        assert!(data[8..].iter().all(u8::is_ascii_alphanumeric));
    }
}

/// The credential headers: `X-API-Key` and `Authorization` as sent.
pub fn auth_headers(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (api_key, authorization) = data.split_at(split);
    let authorization = authorization.get(1..).unwrap_or_default();
    if let Some(token) = bearer_token(authorization) {
        assert!(!token.is_empty() && token.iter().all(u8::is_ascii_graphic));
    }
    for anonymous in [false, true] {
        let facts = RequestFacts {
            method: &Method::GET,
            path: "/",
            api_key: (!api_key.is_empty()).then_some(api_key),
            authorization: (!authorization.is_empty()).then_some(authorization),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            token: None,
        };
        let _ = presented(&facts, "tg", anonymous);
    }
}

/// JWT decoding and validation against a fixed key set: nothing malformed is accepted.
pub fn jwt(data: &[u8]) {
    use std::sync::{Arc, OnceLock};
    static VERIFIER: OnceLock<Option<crate::auth::jwt::TokenVerifier>> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tollgate-fuzz-{}", std::process::id()));
        let keys = crate::oauth::signing::SigningKeys::load(&[dir.join("signing.pem")]).ok()?;
        let config = Config::parse("permissions: [accounts:read]").ok()?;
        Some(crate::auth::jwt::TokenVerifier::new(
            &config.oauth,
            Arc::new(keys),
            Vec::new(),
            crate::policy::permissions::Catalog::new(&config.permissions),
        ))
    });
    let Some(verifier) = verifier else { return };
    // No token from the fuzzer carries a signature by the generated key.
    let result = poll_ready(verifier.verify(data, crate::clock::now_ms()));
    assert!(result.is_err(), "an unsigned input was accepted as a token");
}

/// CIDR parsing and the X-Forwarded-For walk.
pub fn cidr_and_forwarded_for(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(net) = crate::config::parse_cidr(text) {
            assert!(net.contains(&net.network()));
        }
    }
    let trusted = [crate::config::parse_cidr("10.0.0.0/8").unwrap_or_default()];
    let peer = IpAddr::from([10, 0, 0, 1]);
    let client = crate::policy::client_addr::client_ip(peer, [data].into_iter(), &trusted);
    // The walk only ever yields the peer or an address written in the header.
    if client != peer {
        let shown = client.to_string();
        let text = String::from_utf8_lossy(data);
        assert!(
            text.contains(&shown) || text.contains("::ffff:"),
            "{shown} is not in {text:?}"
        );
    }
}

/// The YAML config loader: never panics, and every error names a path.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = Config::parse(text) {
            assert!(!errors.0.is_empty());
        }
    }
}

/// Admin JSON bodies: the key lifecycle rules never panic on any body.
pub fn admin_json(data: &[u8]) {
    use crate::admin::key_rules::{CreateKey, KeyRules, PatchKey, RotateKey};
    use crate::store::records::Policy;
    let Ok(config) =
        Config::parse("permissions: [a, b]\npresets: { p: [a] }\nroles: { r: [a, b] }\n")
    else {
        return;
    };
    let rules = KeyRules::new(&config);
    let policy = Policy {
        block_legacy_keys: false,
        max_key_lifetime: Some(std::time::Duration::from_secs(86_400 * 90)),
    };
    if let Ok(input) = serde_json::from_slice::<CreateKey>(data) {
        if let Ok(change) = rules.create(input, &policy, 1_000_000) {
            assert!(change.minted.is_some());
            if let Ok(patch) = serde_json::from_slice::<PatchKey>(data) {
                let _ = rules.patch(&change.record, patch);
            }
            if let Ok(rotate) = serde_json::from_slice::<RotateKey>(data) {
                let _ = rules.rotate(&change.record, rotate, &policy, 2_000_000);
            }
        }
    }
}

fn poll_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

/// A fuzz target: arbitrary bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("key_parser", key_parser),
    ("auth_headers", auth_headers),
    ("jwt", jwt),
    ("cidr_xff", cidr_and_forwarded_for),
    ("config", config),
    ("admin_json", admin_json),
];
