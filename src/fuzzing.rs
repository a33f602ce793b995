//! Entry points for the fuzz targets in `fuzz/` (and the corpus replay in `tests/`): each
//! takes arbitrary bytes to a parser that faces the network or an operator, and checks
//! the invariants that must hold whatever the input.

use crate::auth::credential::{bearer_token, presented};
use crate::config::{Config, Environment};
use std::net::IpAddr;

/// The key parser: never panics; whatever passes is exactly a well-formed key.
pub fn key_parser(data: &[u8]) {
    if crate::auth::api_key::check_format(
        data,
        "tg",
        crate::config::Environments::of(&[Environment::LIVE]),
    )
    .is_ok()
    {
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
        let api_key = (!api_key.is_empty()).then_some(api_key);
        let authorization = (!authorization.is_empty()).then_some(authorization);
        let _ = presented(api_key, authorization, "tg", anonymous);
    }
}

/// A fixed Ed25519 key for the JWT target, so inputs can carry valid signatures (it signs
/// nothing outside fuzzing).
const FUZZ_SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIF9IXDC/5P/krKXeaG8lAR2cLHc4xRPqurkFVKFkIoY
-----END PRIVATE KEY-----
";

struct JwtFixture {
    keys: std::sync::Arc<crate::auth::signing::SigningKeys>,
    verifier: crate::auth::jwt::TokenVerifier,
}

fn jwt_fixture() -> Option<&'static JwtFixture> {
    use std::sync::{Arc, OnceLock};
    static FIXTURE: OnceLock<Option<JwtFixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("tollgate-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let path = dir.join("signing.pem");
            std::fs::write(&path, FUZZ_SIGNING_KEY).ok()?;
            let keys = Arc::new(crate::auth::signing::SigningKeys::load(&[path]).ok()?);
            let config = Config::parse(
                "permissions: [accounts:read]\noauth: { issuer: \"https://fuzz.test\" }",
            )
            .ok()?;
            let verifier = crate::auth::jwt::TokenVerifier::new(
                &config.oauth,
                keys.clone(),
                Vec::new(),
                crate::policy::permissions::Catalog::new(&config.permissions),
            );
            Some(JwtFixture { keys, verifier })
        })
        .as_ref()
}

/// JWT decoding and validation. The first byte picks what the rest is: a token as sent
/// (never accepted: it cannot carry the fixture key's signature), or claims that the
/// fixture key signs properly (so the claim checks run on whatever the fuzzer writes).
/// Either way nothing panics, and an accepted token has the issuer, type and lifetime a
/// token must have.
pub fn jwt(data: &[u8]) {
    let Some(fixture) = jwt_fixture() else {
        panic!("the JWT fuzz fixture could not be built");
    };
    let now = crate::clock::now_ms();
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 2 {
        0 => rest.to_vec(),
        _ => {
            let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            let Ok(signed) = fixture.keys.sign(&claims) else {
                return;
            };
            signed.into_bytes()
        }
    };
    let result = poll_ready(fixture.verifier.verify(&token, now));
    match (mode % 2, result) {
        (0, Ok(_)) => panic!("an input without the key's signature was accepted"),
        (_, Ok(verified)) => {
            assert!(
                verified.expires_at > now - 60_000,
                "an expired token was accepted"
            );
        }
        (_, Err(_)) => {}
    }
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
    // The walk only ever yields the peer or an address written in the header (compared
    // as addresses: `::10.9.9.9` and `::a09:909` are one address).
    if client != peer {
        let text = String::from_utf8_lossy(data);
        let written = text
            .split(',')
            .map(str::trim)
            .map(|entry| {
                entry
                    .strip_prefix('[')
                    .and_then(|e| e.strip_suffix(']'))
                    .unwrap_or(entry)
            })
            .filter_map(|entry| entry.parse::<IpAddr>().ok())
            .any(|ip| ip == client || canonical(ip) == client);
        assert!(written, "{client} is not in {text:?}");
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
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
                let _ = rules.patch(&change.record, patch, 1_500_000);
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
