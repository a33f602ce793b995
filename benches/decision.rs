//! The hot functions of the request path, each against the obvious alternative:
//! key check (1k and 1M keys), JWT validation (uncached and cached), CIDR match, the local
//! limiter (against a `Mutex<HashMap>`), the Redis limiter round trip (when Redis is
//! reachable) and the whole pure admission decision.
//!
//! `cargo bench --bench decision`; `BENCH_QUICK=1` shortens every measurement.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use http::Method;
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tollgate::auth::api_key::{self, Digest};
use tollgate::auth::jwt::TokenVerifier;
use tollgate::config::{Config, Environment};
use tollgate::gate::{Facts, Gate};
use tollgate::policy::ip_allowlist::Allowlist;
use tollgate::policy::permissions::Catalog;
use tollgate::policy::rate_limit::local::LocalLimiter;
use tollgate::policy::rate_limit::{CallerKey, Counted, TierKind, Windows};
use tollgate::routes::RouteTable;
use tollgate::store::records::{KeyRecord, KeyType, Policy, Secrets, Timestamp};
use tollgate::store::snapshot::{Snapshot, SnapshotBuilder};
use tollgate::store::KeyChanges;

const CONFIG: &str = r#"
permissions: [accounts:read, accounts:write]
upstreams: { api: { targets: ["127.0.0.1:3000"] } }
routes:
  - { path_prefix: /v1/accounts, methods: [GET], upstream: api, require: [accounts:read] }
"#;

fn record(index: usize, digest: Digest) -> KeyRecord {
    KeyRecord {
        id: format!("key_{index:020}"),
        client_id: format!("cid_{index:020}"),
        name: String::new(),
        key_type: KeyType::FineGrained,
        permissions: vec!["accounts:read".into()],
        role: None,
        environment: "live".into(),
        start: String::new(),
        ip_allowlist: vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()],
        allow_infrastructure_ips: false,
        expires_at: None,
        created_at: Timestamp(0),
        rotated_at: None,
        revoked_at: None,
        last_used_at: None,
        rate_limit: None,
        metadata: serde_json::Value::Null,
        client_cert_sha256: None,
        owner_id: None,
        credits: None,
        secrets: Secrets {
            digest,
            grace_digest: None,
            grace_until: None,
            version: 1,
        },
        version: 1,
    }
}

/// A snapshot of `n` keys, and the secrets of the first 10k of them.
fn snapshot(config: &Config, n: usize) -> (Snapshot, Vec<String>) {
    let mut secrets = Vec::new();
    let mut records = Vec::with_capacity(n);
    for index in 0..n {
        if index < 10_000 {
            let minted = api_key::mint("tg", Environment::LIVE);
            records.push(record(index, minted.digest));
            secrets.push(minted.secret);
        } else {
            let digest = api_key::digest(format!("filler-{index}").as_bytes());
            records.push(record(index, digest));
        }
    }
    let changes = KeyChanges {
        version: 1,
        keys: records,
        ..KeyChanges::default()
    };
    let policy = Policy {
        block_legacy_keys: false,
        max_key_lifetime: None,
    };
    (
        SnapshotBuilder::new(config).apply(&Snapshot::empty(policy), changes),
        secrets,
    )
}

fn criterion() -> Criterion {
    let c = Criterion::default();
    if std::env::var_os("BENCH_QUICK").is_some() {
        c.measurement_time(Duration::from_millis(500))
            .warm_up_time(Duration::from_millis(200))
            .sample_size(10)
    } else {
        c.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500))
    }
}

fn key_check(c: &mut Criterion) {
    let config = Config::parse(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let sizes: &[usize] = if std::env::var_os("BENCH_QUICK").is_some() {
        &[1_000, 100_000]
    } else {
        &[1_000, 1_000_000]
    };
    let mut group = c.benchmark_group("key_check");
    group.throughput(Throughput::Elements(1));
    for &n in sizes {
        let (snapshot, secrets) = snapshot(&config, n);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("format+digest+snapshot", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % secrets.len();
                let key = secrets[i].as_bytes();
                let ok = api_key::check_format(
                    key,
                    "tg",
                    tollgate::config::Environments::of(&[Environment::LIVE]),
                )
                .is_ok();
                black_box(ok && snapshot.by_digest(&api_key::digest(key)).is_some())
            })
        });
        // The same probe in a concurrent map, the obvious alternative.
        let dash: DashMap<[u8; 32], usize> = DashMap::new();
        for index in 0..n {
            let digest = if index < secrets.len() {
                api_key::digest(secrets[index].as_bytes())
            } else {
                api_key::digest(format!("filler-{index}").as_bytes())
            };
            dash.insert(digest.0, index);
        }
        group.bench_with_input(BenchmarkId::new("format+digest+dashmap", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % secrets.len();
                let key = secrets[i].as_bytes();
                let ok = api_key::check_format(
                    key,
                    "tg",
                    tollgate::config::Environments::of(&[Environment::LIVE]),
                )
                .is_ok();
                black_box(ok && dash.get(&api_key::digest(key).0).is_some())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("malformed key (refused before hashing)", n),
            &n,
            |b, _| {
                b.iter(|| {
                    black_box(
                        api_key::check_format(
                            b"tg_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                            "tg",
                            tollgate::config::Environments::of(&[Environment::LIVE]),
                        )
                        .is_ok(),
                    )
                })
            },
        );
    }
    group.finish();
}

/// Polls a future that is expected to finish without waiting (the cached path).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

fn jwt(c: &mut Criterion) {
    let config = Config::parse(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keys = Arc::new(
        tollgate::auth::signing::SigningKeys::load(&[dir.path().join("signing.pem")])
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let catalog = Catalog::new(&config.permissions);
    let verifier = TokenVerifier::new(&config.oauth, keys.clone(), Vec::new(), catalog);
    let now = tollgate::clock::now_ms();
    let token = |jti: usize| {
        keys.sign(&serde_json::json!({"iss": config.oauth.issuer, "aud": config.oauth.issuer, "sub": "key_1",
            "client_id": "cid_1", "scope": "accounts:read", "exp": now / 1000 + 3600, "iat": now / 1000,
            "jti": jti.to_string(), "gid": "gr_1", "tg_sv": 1}))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let cached = token(0);
    let fresh: Vec<String> = (1..=2000).map(token).collect();
    let mut group = c.benchmark_group("jwt");
    let mut i = 0usize;
    group.bench_function("EdDSA verify, uncached", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            // A new verifier per token would cost more; instead each token is new to the cache
            // only once per round, so this measures mostly verification.
            let verifier = TokenVerifier::new(
                &config.oauth,
                keys.clone(),
                Vec::new(),
                Catalog::new(&config.permissions),
            );
            black_box(ready(verifier.verify(fresh[i].as_bytes(), now)).is_ok())
        })
    });
    let _ = ready(verifier.verify(cached.as_bytes(), now));
    group.bench_function("cached (sha256 + moka hit)", |b| {
        b.iter(|| black_box(ready(verifier.verify(cached.as_bytes(), now)).is_ok()))
    });
    group.finish();
}

fn cidr(c: &mut Criterion) {
    let nets = [
        "203.0.113.42/32",
        "198.51.100.0/24",
        "10.0.0.0/8",
        "2001:db8::/32",
    ];
    let list = Allowlist::new(
        nets.iter()
            .filter_map(|n| tollgate::config::parse_cidr(n))
            .collect(),
        None,
    );
    let inside: IpAddr = "10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let outside: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let mut group = c.benchmark_group("cidr_allowlist");
    group.bench_function("4 nets, match", |b| {
        b.iter(|| black_box(list.allows(black_box(inside))))
    });
    group.bench_function("4 nets, no match", |b| {
        b.iter(|| black_box(list.allows(black_box(outside))))
    });
    group.finish();
}

fn limiter(c: &mut Criterion) {
    let config = Config::parse("rate_limits: { tiers: { api_key: { per_minute: 1000000000, per_day: 1000000000 } }, burst: { requests: 1000000000, per: 10s } }")
        .unwrap_or_else(|e| panic!("{e}"));
    let windows = Windows::new(&config.rate_limits, TierKind::ApiKey, None, None);
    let callers: Vec<CallerKey> = (0..10_000)
        .map(|i| CallerKey::Key(tollgate::short_id::ShortId::new(&format!("key_{i}"))))
        .collect();
    let local = LocalLimiter::default();
    let naive: Mutex<HashMap<CallerKey, [(i64, u64); 3]>> = Mutex::new(HashMap::new());
    let mut group = c.benchmark_group("rate_limit");
    let mut i = 0usize;
    let now = tollgate::clock::now_ms();
    group.bench_function("local (sharded map, 3 windows)", |b| {
        b.iter(|| {
            i = (i + 1) % callers.len();
            black_box(local.check(&callers[i], &windows, now).allowed())
        })
    });
    // The path a key's own requests take: the state the key holds, no map lookup.
    let held: Vec<tollgate::policy::rate_limit::local::Held> =
        callers.iter().map(|_| Default::default()).collect();
    group.bench_function("local, held by the key (3 windows)", |b| {
        b.iter(|| {
            i = (i + 1) % callers.len();
            black_box(
                local
                    .check_held(&held[i], &callers[i], &windows, now)
                    .allowed(),
            )
        })
    });
    // A key whose owner has a limit: the key's held state, then the owner's, which the key
    // holds too; 100 owners of 100 keys each.
    let owned = windows.with_owner(tollgate::config::Tier {
        per_minute: 1_000_000_000,
        per_day: 1_000_000_000,
    });
    let owners: Vec<CallerKey> = (0..100)
        .map(|i| CallerKey::Owner(tollgate::short_id::ShortId::new(&format!("own_{i}"))))
        .collect();
    group.bench_function(
        "local, held by the key, with its owner's (5 windows)",
        |b| {
            b.iter(|| {
                i = (i + 1) % callers.len();
                black_box(
                    local
                        .check_held_with(
                            &held[i],
                            Counted {
                                caller: &callers[i],
                                owner: Some(&owners[i % 100]),
                                windows: &owned,
                                credits: None,
                            },
                            now,
                        )
                        .allowed(),
                )
            })
        },
    );
    // A key with credits and an owner with credits too: both balances spent per request.
    let huge = tollgate::policy::rate_limit::credits::Credits::new(1 << 49, None, 1, 0);
    let ask = tollgate::policy::rate_limit::credits::CreditAsk {
        cost: 1,
        key: Some(huge),
        owner: Some(huge),
    };
    group.bench_function(
        "local, held by the key, owner's windows and both balances spent",
        |b| {
            b.iter(|| {
                i = (i + 1) % callers.len();
                black_box(
                    local
                        .check_held_with(
                            &held[i],
                            Counted {
                                caller: &callers[i],
                                owner: Some(&owners[i % 100]),
                                windows: &owned,
                                credits: Some(&ask),
                            },
                            now,
                        )
                        .allowed(),
                )
            })
        },
    );
    group.bench_function("Mutex<HashMap> (3 windows)", |b| {
        b.iter(|| {
            i = (i + 1) % callers.len();
            let mut map = naive.lock().unwrap_or_else(|e| e.into_inner());
            let slots = map.entry(callers[i].clone()).or_insert([(0, 0); 3]);
            for (spec, slot) in windows.iter().zip(slots.iter_mut()) {
                if slot.0 != spec.start(now) {
                    *slot = (spec.start(now), 0);
                }
                slot.1 += 1;
            }
            black_box(slots[0].1)
        })
    });
    if let Some(url) = redis_url() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let shared =
            tollgate::policy::rate_limit::redis::RedisLimiter::new(&url, 1, Arc::new(|_| {}));
        // Time the shared counters, not the local fallback: the first answers must come
        // from Redis.
        let first = runtime.block_on(shared.check(Counted::alone(&callers[0], &windows), now));
        let second = runtime.block_on(shared.check(Counted::alone(&callers[0], &windows), now));
        assert!(
            !first.fallback || !second.fallback,
            "Redis at {url} answers TCP but not the limiter script"
        );
        group.bench_function("redis (one script round trip)", |b| {
            b.iter(|| {
                i = (i + 1) % callers.len();
                let verdict =
                    runtime.block_on(shared.check(Counted::alone(&callers[i], &windows), now));
                black_box(verdict.fallback)
            })
        });
    }
    group.finish();
}

fn redis_url() -> Option<String> {
    let url =
        std::env::var("TOLLGATE_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let address = url.trim_start_matches("redis://").to_string();
    std::net::TcpStream::connect(&address).ok().map(|_| url)
}

fn whole_decision(c: &mut Criterion) {
    let config = Config::parse(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let catalog = Catalog::new(&config.permissions);
    let routes = RouteTable::new(&config, &catalog);
    let (snapshot, secrets) = snapshot(&config, 10_000);
    let gate = Gate {
        routes: &routes,
        catalog: &catalog,
        snapshot: &snapshot,
        key_prefix: "tg",
        environments: tollgate::config::Environments::of(&[Environment::LIVE]),
        default_environment: Environment::LIVE,
        stale: false,
        rate_limits: &config.rate_limits,
    };
    let now = tollgate::clock::now_ms();
    let mut group = c.benchmark_group("decide");
    let mut i = 0usize;
    group.bench_function("valid key, allowlist, permission", |b| {
        b.iter(|| {
            i = (i + 1) % secrets.len();
            let facts = Facts {
                method: &Method::GET,
                path: "/v1/accounts/42",
                api_key: Some(secrets[i].as_bytes()),
                authorization: None,
                client_ip: IpAddr::from([127, 0, 0, 1]),
                client_cert: None,
            };
            let admission = gate.finish(gate.begin(&facts), None, now);
            black_box(admission.refusal.is_none())
        })
    });
    group.bench_function("invalid key (unknown digest)", |b| {
        let stranger = api_key::mint("tg", Environment::LIVE).secret;
        b.iter(|| {
            let facts = Facts {
                method: &Method::GET,
                path: "/v1/accounts/42",
                api_key: Some(stranger.as_bytes()),
                authorization: None,
                client_ip: IpAddr::from([127, 0, 0, 1]),
                client_cert: None,
            };
            let admission = gate.finish(gate.begin(&facts), None, now);
            black_box(admission.refusal.is_some())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = key_check, jwt, cidr, limiter, whole_decision
}
criterion_main!(benches);
