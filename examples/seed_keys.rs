//! Seeds a store with many keys for the load benchmark: `--keys` in all, of which the
//! first `--known` have their secrets written out (one per line), plus signed access
//! tokens for them and well-formed keys that do not exist (for the credential-stuffing case).
//!
//! With `--owned N`, the N keys after the known ones are known too (their secrets in
//! `owned.txt`): each belongs to an owner (one per ten keys) with a shared rate limit, and
//! key and owner both hold credits, so every request spends two balances.
//!
//! cargo run --release --example seed_keys -- --config CONFIG --keys 1000000 --known 10000 --out DIR

use std::io::Write;
use tollgate::auth::api_key::{self, Digest};
use tollgate::auth::signing::SigningKeys;
use tollgate::config::{Config, Environment};
use tollgate::policy::rate_limit::credits::Credits;
use tollgate::store::records::{
    Actor, KeyRecord, KeyType, OwnerRecord, RateLimitOverride, Secrets, Timestamp,
};
use tollgate::store::Store;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn record(index: usize, digest: Digest, start: String) -> KeyRecord {
    KeyRecord {
        id: format!("key_{index:020}"),
        client_id: format!("cid_{index:020}"),
        name: format!("bench-{index}"),
        key_type: KeyType::FineGrained,
        permissions: vec!["accounts:read".into()],
        role: None,
        environment: "live".into(),
        start,
        ip_allowlist: vec!["127.0.0.0/8".into()],
        allow_infrastructure_ips: false,
        expires_at: None,
        created_at: Timestamp(index as i64),
        rotated_at: None,
        revoked_at: None,
        last_used_at: None,
        rate_limit: None,
        metadata: serde_json::json!({}),
        client_cert_sha256: None,
        owner_id: None,
        credits: None,
        secrets: Secrets {
            digest,
            grace_digest: None,
            grace_until: None,
            version: 1,
        },
        version: 0,
    }
}

fn owner_id(index: usize) -> String {
    format!("own_{index:020}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(std::path::Path::new(&arg("--config").unwrap_or_default()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let total: usize = arg("--keys").unwrap_or_else(|| "1000000".into()).parse()?;
    let known: usize = arg("--known").unwrap_or_else(|| "10000".into()).parse()?;
    let owned: usize = arg("--owned").unwrap_or_else(|| "0".into()).parse()?;
    anyhow::ensure!(
        known + owned <= total,
        "--known plus --owned exceeds --keys"
    );
    let out = std::path::PathBuf::from(arg("--out").unwrap_or_else(|| ".".into()));
    let store = Store::open(&config.store.url).await?;
    let keys = SigningKeys::load(&config.oauth.signing_key_path)?;
    let mut secrets = std::io::BufWriter::new(std::fs::File::create(out.join("keys.txt"))?);
    let mut tokens = std::io::BufWriter::new(std::fs::File::create(out.join("tokens.txt"))?);
    let mut strangers = std::io::BufWriter::new(std::fs::File::create(out.join("invalid.txt"))?);
    let mut owned_secrets = std::io::BufWriter::new(std::fs::File::create(out.join("owned.txt"))?);
    let now = tollgate::clock::now_ms();
    // Limits and balances no bench run reaches: the checks run, and never refuse.
    let plenty = Credits::new(1 << 50, None, 1, now);
    for owner in 0..owned.div_ceil(10) {
        let record = OwnerRecord {
            id: owner_id(owner),
            name: format!("bench-owner-{owner}"),
            external_id: None,
            rate_limit: Some(RateLimitOverride {
                per_minute: 1_000_000_000,
                per_day: 1_000_000_000_000,
            }),
            credits: Some(plenty),
            metadata: serde_json::json!({}),
            created_at: Timestamp(now),
            updated_at: Timestamp(now),
            version: 0,
        };
        store
            .insert_owner(&record, &Actor::system("seed_keys"), now)
            .await?;
    }
    let audience = config
        .oauth
        .audience
        .clone()
        .unwrap_or_else(|| config.oauth.issuer.clone());
    let mut batch = Vec::with_capacity(10_000);
    for index in 0..total {
        let record = if index < known {
            let minted = api_key::mint(&config.key_prefix, Environment::LIVE);
            writeln!(secrets, "{}", minted.secret)?;
            let claims = serde_json::json!({
                "iss": config.oauth.issuer, "aud": audience, "sub": format!("key_{index:020}"),
                "client_id": format!("cid_{index:020}"), "scope": "accounts:read",
                "exp": now / 1000 + 86_400, "iat": now / 1000, "jti": index.to_string(), "gid": "gr_bench", "tg_sv": 1,
            });
            writeln!(tokens, "{}", keys.sign(&claims)?)?;
            writeln!(
                strangers,
                "{}",
                api_key::mint(&config.key_prefix, Environment::LIVE).secret
            )?;
            record(index, minted.digest, minted.start)
        } else if index < known + owned {
            let minted = api_key::mint(&config.key_prefix, Environment::LIVE);
            writeln!(owned_secrets, "{}", minted.secret)?;
            KeyRecord {
                owner_id: Some(owner_id((index - known) / 10)),
                credits: Some(plenty),
                ..record(index, minted.digest, minted.start)
            }
        } else {
            record(
                index,
                api_key::digest(format!("filler-{index}").as_bytes()),
                "tg_live_fill".into(),
            )
        };
        batch.push(record);
        if batch.len() == batch.capacity() {
            store.import_keys(&batch, now).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.import_keys(&batch, now).await?;
    }
    println!("seeded {total} keys ({known} known, {owned} owned) into the store");
    Ok(())
}
