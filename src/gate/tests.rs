//! Every gate row of SPEC section 4's error table, with no network and any clock. The
//! three rows the gate does not decide (`upstream_unavailable`, `upstream_timeout`, and
//! the head limits) are answers about the upstream or the bytes, made by the proxy.

use super::*;
use crate::auth::api_key::mint;
use crate::auth::jwt::Issuer;
use crate::config::Config;
use crate::policy::rate_limit::local::LocalLimiter;
use crate::store::keys_for_tests::record;
use crate::store::records::{KeyRecord, Policy, Timestamp};
use crate::store::snapshot::SnapshotBuilder;
use crate::store::KeyChanges;
use crate::usage::Outcome;

const CONFIG: &str = r#"
permissions: [accounts:read, accounts:write]
upstreams: { api: { targets: ["127.0.0.1:3000"] } }
rate_limits:
  tiers:
    api_key: { per_minute: 3, per_day: 5 }
  burst: { requests: 100, per: 10s }
routes:
  - { path_prefix: /v1/accounts, methods: [GET], upstream: api, require: [accounts:read] }
  - { path_prefix: /v1/accounts, methods: [POST], upstream: api, require: [accounts:write] }
  - { path_prefix: /v1/public, upstream: api, anonymous: true }
"#;

struct World {
    config: Config,
    catalog: Catalog,
    routes: RouteTable,
    snapshot: Snapshot,
    secret: String,
}

fn world(edit: impl FnOnce(&mut KeyRecord)) -> World {
    let config = Config::parse(CONFIG).unwrap();
    let catalog = Catalog::new(&config.permissions);
    let routes = RouteTable::new(&config, &catalog);
    let minted = mint("tg", Environment::LIVE);
    let mut key = record("key_1", minted.digest);
    key.permissions = vec!["accounts:read".into()];
    key.ip_allowlist = vec!["127.0.0.1/32".into()];
    edit(&mut key);
    let policy = Policy {
        block_legacy_keys: false,
        max_key_lifetime: None,
    };
    let changes = KeyChanges {
        version: 1,
        keys: vec![key],
        retired: vec![],
        ..KeyChanges::default()
    };
    let snapshot = SnapshotBuilder::new(&config).apply(&Snapshot::empty(policy), changes);
    World {
        config,
        catalog,
        routes,
        snapshot,
        secret: minted.secret,
    }
}

impl World {
    fn gate(&self, stale: bool) -> Gate<'_> {
        Gate {
            routes: &self.routes,
            catalog: &self.catalog,
            snapshot: &self.snapshot,
            key_prefix: &self.config.key_prefix,
            environments: self.config.accepted_environments(),
            default_environment: self.config.environment,
            stale,
            rate_limits: &self.config.rate_limits,
        }
    }
}

/// A request as the gate sees it; `headers` are `X-API-Key` and `Authorization`.
struct Request<'a> {
    method: Method,
    path: &'a str,
    api_key: Option<&'a str>,
    authorization: Option<&'a str>,
    ip: [u8; 4],
    client_cert: Option<[u8; 32]>,
    now: i64,
    stale: bool,
    token: Option<Result<Arc<VerifiedToken>, Denial>>,
}

fn get<'a>(path: &'a str) -> Request<'a> {
    Request {
        method: Method::GET,
        path,
        api_key: None,
        authorization: None,
        ip: LOCAL,
        client_cert: None,
        now: 0,
        stale: false,
        token: None,
    }
}

const LOCAL: [u8; 4] = [127, 0, 0, 1];

fn admit<'w>(world: &'w World, request: &Request<'_>) -> Admission<'w> {
    let gate = world.gate(request.stale);
    let facts = Facts {
        method: &request.method,
        path: request.path,
        api_key: request.api_key.map(str::as_bytes),
        authorization: request.authorization.map(str::as_bytes),
        client_ip: IpAddr::from(request.ip),
        client_cert: request.client_cert.as_ref(),
    };
    let pending = gate.begin(&facts);
    // The caller verifies exactly when the gate asks.
    assert_eq!(
        pending.token().is_some(),
        request.token.is_some(),
        "the gate asks for a token to verify exactly when a routed request presents one"
    );
    gate.finish(pending, request.token.as_ref(), request.now)
}

/// The admission, then the limiter (in memory), as the glue runs them.
fn answer<'w>(world: &'w World, limiter: &LocalLimiter, request: &Request<'_>) -> Answer<'w> {
    let admission = admit(world, request);
    let counted = &admission.counted_as;
    let verdict = match admission.counts() {
        true => limiter.check_with(counted.counted(), request.now),
        false => limiter.peek_with(
            &counted.caller,
            counted.owner.as_ref(),
            &counted.windows,
            request.now,
        ),
    };
    admission.with(verdict)
}

fn decide(world: &World, request: Request<'_>) -> Result<&'static str, Denial> {
    let answer = answer(world, &LocalLimiter::new(100), &request);
    match answer.decision {
        Decision::Forward => Ok(answer.caller.as_ref().map_or("none", Caller::method)),
        Decision::Refuse(denial) => Err(denial),
    }
}

fn token(issuer: Issuer, subject: &str, scope: &[&str], world: &World) -> Arc<VerifiedToken> {
    Arc::new(VerifiedToken {
        issuer,
        subject: Arc::from(subject),
        client_id: Arc::from("cid_key_1"),
        scope: world.catalog.set(scope).unwrap(),
        scope_header: crate::reply::text(&scope.join(" ")),
        expires_at: 60_000,
    })
}

#[test]
fn a_valid_key_is_admitted_with_its_permissions() {
    let w = world(|_| {});
    let key = Some(w.secret.as_str());
    assert_eq!(
        decide(
            &w,
            Request {
                api_key: key,
                ..get("/v1/accounts")
            }
        ),
        Ok("api_key")
    );
    let bearer = format!("Bearer {}", w.secret);
    assert_eq!(
        decide(
            &w,
            Request {
                authorization: Some(&bearer),
                ..get("/v1/accounts")
            }
        ),
        Ok("api_key"),
        "a bearer with the key prefix is a key"
    );
    // A valid key on an anonymous route carries its identity.
    assert_eq!(
        decide(
            &w,
            Request {
                api_key: key,
                ..get("/v1/public")
            }
        ),
        Ok("api_key")
    );
    assert_eq!(decide(&w, get("/v1/public")), Ok("anonymous"));
}

#[test]
fn invalid_request_for_two_credentials_or_a_malformed_authorization() {
    let w = world(|_| {});
    let both = Request {
        api_key: Some(&w.secret),
        authorization: Some("Bearer abc"),
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, both), Err(Denial::BothCredentials));
    let basic = Request {
        authorization: Some("Basic abc"),
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, basic), Err(Denial::MalformedAuthorization));
    assert_eq!(Denial::BothCredentials.code(), "invalid_request");
    assert_eq!(Denial::MalformedAuthorization.status(), 400);
}

#[test]
fn missing_credentials_only_where_the_route_needs_one() {
    let w = world(|_| {});
    assert_eq!(
        decide(&w, get("/v1/accounts")),
        Err(Denial::MissingCredentials)
    );
    assert_eq!(Denial::MissingCredentials.status(), 401);
}

#[test]
fn invalid_api_key_is_one_answer_for_malformed_bad_checksum_and_unknown() {
    let w = world(|_| {});
    let mut flipped = w.secret.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let stranger = mint("tg", Environment::LIVE).secret;
    for key in ["tg_live_nope", "hello", flipped.as_str(), stranger.as_str()] {
        let request = Request {
            api_key: Some(key),
            ..get("/v1/accounts")
        };
        assert_eq!(decide(&w, request), Err(Denial::InvalidApiKey), "{key}");
    }
}

#[test]
fn wrong_environment_for_a_test_key_on_a_live_gateway() {
    let w = world(|_| {});
    let test_key = mint("tg", Environment::TEST).secret;
    let request = Request {
        api_key: Some(&test_key),
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, request), Err(Denial::WrongEnvironment));
}

#[test]
fn key_expired_exactly_at_the_edge() {
    let w = world(|k| k.expires_at = Some(Timestamp(10_000)));
    let at = |now| Request {
        api_key: Some(&w.secret),
        now,
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, at(9_999)), Ok("api_key"));
    assert_eq!(decide(&w, at(10_000)), Err(Denial::KeyExpired));
}

#[test]
fn key_revoked_beats_expired_and_a_rotated_secret_ends_with_its_grace() {
    let w = world(|k| {
        k.expires_at = Some(Timestamp(5));
        k.revoked_at = Some(Timestamp(1));
    });
    let request = Request {
        api_key: Some(&w.secret),
        now: 10,
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, request), Err(Denial::KeyRevoked));

    let old = mint("tg", Environment::LIVE);
    let old_digest = old.digest;
    let w = world(move |k| {
        k.secrets.grace_digest = Some(old_digest);
        k.secrets.grace_until = Some(1_000);
    });
    let at = |now| Request {
        api_key: Some(&old.secret),
        now,
        ..get("/v1/accounts")
    };
    let admitted = admit(&w, &at(999));
    assert!(admitted.refusal.is_none());
    assert_eq!(
        admitted.grace.map(|g| g.until),
        Some(1_000),
        "answers say until when"
    );
    assert_eq!(decide(&w, at(1_000)), Err(Denial::KeyRevoked));
}

#[test]
fn a_key_bound_to_a_client_certificate_needs_that_certificate() {
    let bound = [0xabu8; 32];
    let w = world(|key| key.client_cert_sha256 = Some(hex::encode(bound)));
    let with = |client_cert: Option<[u8; 32]>| Request {
        api_key: Some(&w.secret),
        client_cert,
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, with(Some(bound))), Ok("api_key"));
    assert_eq!(
        decide(&w, with(None)),
        Err(Denial::ClientCertificateRequired)
    );
    assert_eq!(
        decide(&w, with(Some([0xcd; 32]))),
        Err(Denial::ClientCertificateRequired)
    );
    // So does a token issued to the bound key.
    let own = || Issuer::Own {
        grant_id: Arc::from("grant_1"),
        key_version: Some(1),
    };
    let bearer = |client_cert: Option<[u8; 32]>| Request {
        authorization: Some("Bearer eyJhbGciOi.x.y"),
        token: Some(Ok(token(own(), "key_1", &["accounts:read"], &w))),
        client_cert,
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, bearer(Some(bound))), Ok("oauth"));
    assert_eq!(
        decide(&w, bearer(None)),
        Err(Denial::ClientCertificateRequired)
    );
    // An unbound key works with or without a certificate.
    let free = world(|_| {});
    let any = Request {
        api_key: Some(&free.secret),
        client_cert: Some([0xcd; 32]),
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&free, any), Ok("api_key"));
}

#[test]
fn ip_not_allowed_and_insufficient_permission_are_about_the_key() {
    let w = world(|_| {});
    let elsewhere = Request {
        api_key: Some(&w.secret),
        ip: [127, 0, 0, 2],
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, elsewhere), Err(Denial::IpNotAllowed));
    let write = Request {
        method: Method::POST,
        api_key: Some(&w.secret),
        ..get("/v1/accounts")
    };
    let answer = answer(&w, &LocalLimiter::new(10), &write);
    assert_eq!(
        answer.denial(),
        Some(&Denial::InsufficientPermission {
            missing: Arc::from("accounts:write")
        })
    );
    let (key, outcome) = answer.usage().expect("a refusal of a known key counts");
    assert_eq!(
        (&*key.id.as_str(), outcome),
        ("key_1", Outcome::InsufficientPermission)
    );
}

#[test]
fn route_not_found_before_any_credential_is_read_or_verified() {
    let w = world(|_| {});
    // A bearer token on no route is never handed out for verification (`admit` asserts
    // that no token is asked for), so no JWKS is fetched for it.
    let request = Request {
        authorization: Some("Bearer eyJhbGciOi"),
        ..get("/nowhere")
    };
    let admission = admit(&w, &request);
    assert_eq!(admission.refusal, Some(Denial::RouteNotFound));
    assert_eq!(
        admission.decision_labels(),
        None,
        "unrouted requests are not decisions"
    );
    assert_eq!(decide(&w, get("/nowhere")), Err(Denial::RouteNotFound));
}

#[test]
fn store_unavailable_only_for_a_miss_in_a_stale_snapshot() {
    let w = world(|_| {});
    let stranger = mint("tg", Environment::LIVE).secret;
    let stale = |key| Request {
        api_key: Some(key),
        stale: true,
        ..get("/v1/accounts")
    };
    assert_eq!(decide(&w, stale(&stranger)), Err(Denial::StoreUnavailable));
    // A known key keeps working from a stale snapshot; garbage never gets to the lookup.
    assert_eq!(decide(&w, stale(&w.secret)), Ok("api_key"));
    assert_eq!(
        decide(&w, stale("tg_live_nope")),
        Err(Denial::InvalidApiKey)
    );
}

#[test]
fn tokens_invalid_expired_or_tied_to_a_revoked_key() {
    let w = world(|_| {});
    let bearer = Some("Bearer eyJhbGciOi.x.y");
    let with = |token: Result<Arc<VerifiedToken>, Denial>, now| Request {
        authorization: bearer,
        token: Some(token),
        now,
        ..get("/v1/accounts")
    };
    // The verifier's refusal (bad signature, wrong iss/aud, unknown kid) is the answer.
    assert_eq!(
        decide(&w, with(Err(Denial::InvalidToken), 0)),
        Err(Denial::InvalidToken)
    );
    let external = token(Issuer::External, "user_9", &["accounts:read"], &w);
    assert_eq!(decide(&w, with(Ok(external.clone()), 0)), Ok("oauth"));
    let leeway = crate::auth::jwt::LEEWAY_MS;
    assert_eq!(
        decide(&w, with(Ok(external), 60_000 + leeway)),
        Err(Denial::TokenExpired)
    );
    let narrow = token(Issuer::External, "user_9", &[], &w);
    assert_eq!(
        decide(&w, with(Ok(narrow), 0)),
        Err(Denial::InsufficientPermission {
            missing: Arc::from("accounts:read")
        })
    );
    // A client-credentials token of a key whose secret was rotated since is revoked.
    let own = |version| Issuer::Own {
        grant_id: Arc::from("grant_1"),
        key_version: Some(version),
    };
    let current = token(own(1), "key_1", &["accounts:read"], &w);
    assert_eq!(decide(&w, with(Ok(current), 0)), Ok("oauth"));
    let rotated = token(own(0), "key_1", &["accounts:read"], &w);
    assert_eq!(decide(&w, with(Ok(rotated), 0)), Err(Denial::KeyRevoked));
    // A user token whose user the snapshot does not know is invalid.
    let user = Issuer::Own {
        grant_id: Arc::from("grant_2"),
        key_version: None,
    };
    let unknown = token(user, "user_1", &["accounts:read"], &w);
    assert_eq!(decide(&w, with(Ok(unknown), 0)), Err(Denial::InvalidToken));
}

#[test]
fn a_keys_own_token_counts_as_the_key_in_the_key_tier() {
    let w = world(|_| {});
    let own = Issuer::Own {
        grant_id: Arc::from("grant_1"),
        key_version: Some(1),
    };
    let request = Request {
        authorization: Some("Bearer eyJhbGciOi.x.y"),
        token: Some(Ok(token(own, "key_1", &["accounts:read"], &w))),
        ..get("/v1/accounts")
    };
    let admission = admit(&w, &request);
    let key = Request {
        api_key: Some(&w.secret),
        ..get("/v1/accounts")
    };
    assert_eq!(
        admission.counted_as.caller,
        admit(&w, &key).counted_as.caller
    );
    assert_eq!(
        admission.counted_as.windows.tier,
        crate::policy::rate_limit::TierKind::ApiKey
    );
}

#[test]
fn rate_limited_then_quota_exceeded_and_refusals_spend_nothing() {
    let w = world(|_| {});
    let limiter = LocalLimiter::new(100);
    let minute = 60_000;
    let ok = |now| Request {
        api_key: Some(&w.secret),
        now,
        ..get("/v1/accounts")
    };
    for _ in 0..3 {
        assert_eq!(answer(&w, &limiter, &ok(0)).decision, Decision::Forward);
    }
    let limited = answer(&w, &limiter, &ok(0));
    assert_eq!(limited.denial(), Some(&Denial::RateLimited));
    assert_eq!(limited.usage().map(|(_, o)| o), Some(Outcome::RateLimited));
    // A refused request (here: from the wrong address) does not spend the key's budget.
    let elsewhere = Request {
        ip: [10, 0, 0, 1],
        ..ok(minute)
    };
    for _ in 0..10 {
        assert_eq!(
            answer(&w, &limiter, &elsewhere).denial(),
            Some(&Denial::IpNotAllowed)
        );
    }
    for _ in 0..2 {
        assert_eq!(
            answer(&w, &limiter, &ok(minute)).decision,
            Decision::Forward
        );
    }
    let over = answer(&w, &limiter, &ok(minute));
    assert_eq!(over.denial(), Some(&Denial::QuotaExceeded), "5 a day");
    assert_eq!(over.usage().map(|(_, o)| o), Some(Outcome::QuotaExceeded));
    assert_eq!(over.verdict.tightest().map(|w| w.remaining()), Some(0));
}

#[test]
fn an_unknown_key_counts_against_the_address_and_in_no_usage() {
    let w = world(|_| {});
    let stranger = mint("tg", Environment::LIVE).secret;
    let request = Request {
        api_key: Some(&stranger),
        ..get("/v1/accounts")
    };
    let answer = answer(&w, &LocalLimiter::new(10), &request);
    assert_eq!(answer.denial(), Some(&Denial::InvalidApiKey));
    assert!(answer.usage().is_none());
    assert_eq!(
        answer.windows.tier,
        crate::policy::rate_limit::TierKind::Anonymous
    );
}
