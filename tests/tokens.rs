//! Access tokens on the data plane: forged and malformed tokens are refused, and tokens
//! from an external identity provider are checked against its JWKS as its keys change.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    tollgate::clock::now_ms() / 1000
}

async fn call(gw: &Gateway, token: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .get(gw.url("/v1/accounts"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
        challenge,
    )
}

fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_malformed_tokens_are_refused() {
    let up = upstream();
    let gw = Gateway::start(&credentials_config(
        &up,
        "sqlite://{dir}/data/tollgate.db",
        "live",
    ));
    let admin = Admin::of(&gw);
    let (status, key) = admin
        .post(
            "/keys",
            json!({"name": "k", "permissions": ["accounts:read"]}),
        )
        .await;
    assert_eq!(status, 201);
    let pem = std::fs::read(gw.dir.path().join("signing.pem")).unwrap();
    let signer = EncodingKey::from_ed_pem(&pem).unwrap();
    let jwks: serde_json::Value = reqwest::get(gw.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let public_x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let issuer = format!("http://{}", gw.addr);
    let claims = |exp: i64| {
        json!({"iss": issuer, "aud": issuer, "sub": key["id"], "client_id": key["client_id"], "scope": "accounts:read",
               "exp": exp, "iat": now(), "jti": "j1", "gid": "gr_test", "tg_sv": 1})
    };
    let header = |alg: Algorithm, typ: &str| {
        let mut header = Header::new(alg);
        header.typ = Some(typ.into());
        header.kid = Some(kid.clone());
        header
    };

    // The control: a well-formed token signed by the gateway's key works.
    let good = sign(
        header(Algorithm::EdDSA, "at+jwt"),
        &claims(now() + 600),
        &signer,
    );
    assert_eq!(call(&gw, &good).await.0, 200);

    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64(claims(now() + 600).to_string().as_bytes())
    );
    let hs256_with_public_key = sign(
        header(Algorithm::HS256, "at+jwt"),
        &claims(now() + 600),
        &EncodingKey::from_secret(&public_x),
    );
    let wrong_typ = sign(
        header(Algorithm::EdDSA, "JWT"),
        &claims(now() + 600),
        &signer,
    );
    let mut unknown_kid = header(Algorithm::EdDSA, "at+jwt");
    unknown_kid.kid = Some("not-a-key".into());
    let unknown_kid = sign(unknown_kid, &claims(now() + 600), &signer);
    let mut injected = header(Algorithm::EdDSA, "at+jwt");
    injected.kid = Some("../../../../etc/passwd' OR '1'='1".into());
    let injected = sign(injected, &claims(now() + 600), &signer);
    let mut jku = header(Algorithm::EdDSA, "at+jwt");
    jku.jku = Some("https://evil.test/jwks.json".into());
    let jku = sign(jku, &claims(now() + 600), &signer);
    // Headers signed for real with the gateway's key, so only the header itself can be
    // what refuses them.
    let signed_with = |head: serde_json::Value, payload: String| {
        let message = format!(
            "{}.{}",
            b64(head.to_string().as_bytes()),
            b64(payload.as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &signer, Algorithm::EdDSA).unwrap();
        format!("{message}.{signature}")
    };
    let valid_claims = claims(now() + 600).to_string();
    let crit = signed_with(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
        valid_claims.clone(),
    );
    let x5u = signed_with(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "x5u": "https://evil.test/cert.pem"}),
        valid_claims.clone(),
    );
    let embedded_jwk = signed_with(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "jwk": jwks["keys"][0]}),
        valid_claims.clone(),
    );
    let x5c = signed_with(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "x5c": ["MIIB"]}),
        valid_claims.clone(),
    );
    // A control for the helper: the same header without the extra field passes.
    let plain = signed_with(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
        valid_claims.clone(),
    );
    assert_eq!(call(&gw, &plain).await.0, 200);
    let duplicate_keys = {
        let head = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let payload = format!(
            r#"{{"iss":"{issuer}","aud":"{issuer}","sub":"x","sub":"{}","exp":{},"gid":"g","tg_sv":1}}"#,
            key["id"].as_str().unwrap(),
            now() + 600
        );
        let message = format!(
            "{}.{}",
            b64(head.to_string().as_bytes()),
            b64(payload.as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &signer, Algorithm::EdDSA).unwrap();
        format!("{message}.{signature}")
    };
    let mut other_issuer = claims(now() + 600);
    other_issuer["iss"] = json!("https://someone-else.test/");
    let other_issuer = sign(header(Algorithm::EdDSA, "at+jwt"), &other_issuer, &signer);
    let mut other_audience = claims(now() + 600);
    other_audience["aud"] = json!("https://another-api.test/");
    let other_audience = sign(header(Algorithm::EdDSA, "at+jwt"), &other_audience, &signer);
    let jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".to_string();
    // Validly signed, well-formed, and over the 8 KiB a token may take.
    let oversized = {
        let mut padded = claims(now() + 600);
        padded["pad"] = json!("a".repeat(12 * 1024));
        sign(header(Algorithm::EdDSA, "at+jwt"), &padded, &signer)
    };
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut forged = claims(now() + 600);
        forged["scope"] = json!("accounts:read accounts:write");
        parts[1] = b64(forged.to_string().as_bytes());
        parts.join(".")
    };

    for (name, token) in [
        ("alg none", unsigned),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("wrong typ", wrong_typ),
        ("unknown kid", unknown_kid),
        ("kid injection", injected),
        ("jku header", jku),
        ("crit header", crit),
        ("x5u header", x5u),
        ("jwk header", embedded_jwk),
        ("x5c header", x5c),
        ("duplicate JSON keys", duplicate_keys),
        ("another issuer", other_issuer),
        ("another audience", other_audience),
        ("JWE", jwe),
        ("oversized", oversized),
        ("tampered claims", tampered),
        ("garbage", "not.a.token".to_string()),
    ] {
        let (status, code, challenge) = call(&gw, &token).await;
        assert_eq!((status, code.as_str()), (401, "invalid_token"), "{name}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }
    let expired = sign(
        header(Algorithm::EdDSA, "at+jwt"),
        &claims(now() - 120),
        &signer,
    );
    assert_eq!(call(&gw, &expired).await.1, "token_expired");
    assert!(
        up.recorder.requests().len() == 2,
        "only the two controls reached the upstream"
    );
}

/// A JWKS endpoint whose keys the test changes, counting fetches.
struct Idp {
    addr: std::net::SocketAddr,
    jwks: Arc<Mutex<Option<serde_json::Value>>>,
    fetches: Arc<AtomicUsize>,
}

struct IdpKey {
    kid: String,
    signer: EncodingKey,
    jwk: serde_json::Value,
}

fn idp_key(kid: &str) -> IdpKey {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let der = Ed25519KeyPair::generate_pkcs8v1(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    IdpKey {
        kid: kid.into(),
        signer: EncodingKey::from_ed_der(der.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "x": b64(pair.public_key().as_ref())}),
    }
}

async fn start_idp(keys: &[&IdpKey]) -> Idp {
    let jwks = Arc::new(Mutex::new(Some(
        json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
    )));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (jwks.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                match served.lock().unwrap().clone() {
                    Some(body) => (axum::http::StatusCode::OK, axum::Json(body)),
                    None => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({})),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp {
        addr,
        jwks,
        fetches,
    }
}

fn idp_token(key: &IdpKey, audience: &str, scope: serde_json::Value, jti: &str) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    let claims = json!({"iss": "https://idp.test/", "aud": audience, "sub": "ext-user", "azp": "partner-app",
                        "scp": scope, "exp": now() + 600, "iat": now(), "jti": jti});
    jsonwebtoken::encode(&header, &claims, &key.signer).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn external_issuer_keys_rotate_and_a_failing_jwks_keeps_the_last_good_keys() {
    let up = upstream();
    let (k1, k2, k3) = (idp_key("k1"), idp_key("k2"), idp_key("k3"));
    let idp = start_idp(&[&k1]).await;
    let yaml = credentials_config(&up, "sqlite://{dir}/data/tollgate.db", "live").replace(
        "signing_key_path: \"{dir}/signing.pem\" }",
        &format!(
            "signing_key_path: \"{{dir}}/signing.pem\", external_issuers: [{{ issuer: \"https://idp.test/\", jwks_url: \"http://{}/jwks\", audience: my-api }}] }}",
            idp.addr
        ),
    );
    let gw = tokio::task::spawn_blocking(move || Gateway::start(&yaml))
        .await
        .unwrap();

    // Its scopes (scp, as a list) map to permissions.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = call(
            &gw,
            &idp_token(&k1, "my-api", json!(["accounts:read"]), "a"),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first JWKS fetch never happened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = up.recorder.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-tollgate-subject"), ["ext-user"]);
    assert_eq!(last.header("x-tollgate-client-id"), ["partner-app"]);
    assert_eq!(last.header("x-tollgate-permissions"), ["accounts:read"]);
    assert_eq!(
        call(&gw, &idp_token(&k1, "my-api", json!("accounts:write"), "b"))
            .await
            .1,
        "insufficient_permission"
    );
    assert_eq!(
        call(
            &gw,
            &idp_token(&k1, "other-api", json!("accounts:read"), "c")
        )
        .await
        .1,
        "invalid_token"
    );

    // The provider rotates: k2 appears (k1 goes). The unknown kid triggers a refetch.
    *idp.jwks.lock().unwrap() = Some(json!({"keys": [k2.jwk.clone()]}));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, _, _) = call(
            &gw,
            &idp_token(
                &k2,
                "my-api",
                json!("accounts:read"),
                &format!("k2-{attempt}"),
            ),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "k2 was never fetched");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Many requests with another unknown kid at once cause at most one fetch.
    tokio::time::sleep(tollgate::auth::jwks::REFETCH_COOLDOWN).await;
    let before = idp.fetches.load(Ordering::SeqCst);
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let token = idp_token(&k3, "my-api", json!("accounts:read"), &format!("k3-{i}"));
            let url = gw.url("/v1/accounts");
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap(), 401);
    }
    let fetched = idp.fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 1, "{fetched} fetches for one unknown kid");

    // The endpoint fails: the last good keys stay.
    *idp.jwks.lock().unwrap() = None;
    tokio::time::sleep(tollgate::auth::jwks::REFETCH_COOLDOWN).await;
    assert_eq!(
        call(
            &gw,
            &idp_token(&k3, "my-api", json!("accounts:read"), "k3-late")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            &gw,
            &idp_token(&k2, "my-api", json!("accounts:read"), "k2-after-failure")
        )
        .await
        .0,
        200
    );
}
