//! The store on both backends: the same operations against the real SQLite file and a real
//! PostgreSQL database, with the same results.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tollgate::admin::key_rules::KeyRules;
use tollgate::config::{Config, StoreUrl};
use tollgate::store::records::Policy;
use tollgate::store::snapshot::{KeyEntry, Snapshot, SnapshotBuilder};
use tollgate::store::{Idempotent, Store, StoreError, UsageBatch};

const CONFIG: &str = "permissions: [accounts:read, accounts:write]\n";

fn policy() -> Policy {
    Policy {
        block_legacy_keys: false,
        max_key_lifetime: None,
    }
}

async fn exercise(url: StoreUrl) {
    let config = Config::parse(CONFIG).unwrap();
    let rules = KeyRules::new(&config);
    let store = Store::open(&url).await.unwrap();
    // Opening again re-applies nothing and loses nothing.
    let store_again = Store::open(&url).await.unwrap();
    store.seed_policy(policy(), 1).await.unwrap();
    store_again
        .seed_policy(
            Policy {
                block_legacy_keys: true,
                max_key_lifetime: None,
            },
            2,
        )
        .await
        .unwrap();
    let (seeded, _) = store.get_policy().await.unwrap().unwrap();
    assert_eq!(seeded, policy(), "seeding never overwrites a stored policy");

    // Create three keys; list them in pages of two, newest first.
    let mut made = Vec::new();
    for i in 0..3 {
        let input = serde_json::from_value(
            serde_json::json!({"name": format!("k{i}"), "permissions": ["accounts:read"]}),
        )
        .unwrap();
        let change = rules.create(input, &policy(), 1000 + i).unwrap();
        let saved = store
            .insert_key(
                &change.record,
                &tollgate::store::records::Actor::system("test"),
                1000 + i,
            )
            .await
            .unwrap();
        made.push((saved, change.minted.unwrap()));
    }
    let all = tollgate::store::KeyFilter::default();
    let first = store.list_keys(all, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let last = first.last().unwrap();
    let rest = store
        .list_keys(all, Some((last.created_at.0, last.id.clone())), 2)
        .await
        .unwrap();
    assert_eq!(first[0].id, made[2].0.id);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, made[0].0.id);

    // The snapshot sees all of them; an incremental sync sees only what changed.
    let mut builder = SnapshotBuilder::new(&config);
    let full = store.changes_since(0).await.unwrap();
    assert_eq!(full.keys.len(), 3);
    let snapshot = builder.apply(&Snapshot::empty(policy()), full);
    assert!(snapshot.by_digest(&made[0].1.digest).is_some());

    let (key, _) = &made[1];
    let rotated = rules
        .rotate(key, Default::default(), &policy(), 5000)
        .unwrap();
    let saved = store
        .replace_key(
            key,
            &rotated.record,
            "key.rotate",
            &tollgate::store::records::Actor::system("test"),
            &rotated.retired,
            5000,
        )
        .await
        .unwrap();
    // Writing from a stale read is refused, not lost.
    let stale = rules.revoke(key, 5001).unwrap();
    assert!(matches!(
        store
            .replace_key(
                key,
                &stale.record,
                "key.revoke",
                &tollgate::store::records::Actor::system("test"),
                &[],
                5001
            )
            .await,
        Err(StoreError::Conflict)
    ));
    let delta = store.changes_since(snapshot.version).await.unwrap();
    assert_eq!(delta.keys.len(), 1);
    assert_eq!(delta.retired.len(), 1);
    let snapshot = builder.apply(&snapshot, delta);
    assert!(matches!(
        snapshot.by_digest(&made[1].1.digest),
        Some(KeyEntry::Retired { .. })
    ));
    assert!(matches!(
        snapshot.by_digest(&rotated.minted.unwrap().digest),
        Some(KeyEntry::Secret { .. })
    ));
    assert!(store
        .changes_since(snapshot.version)
        .await
        .unwrap()
        .keys
        .is_empty());
    assert_eq!(
        store.get_key(&key.id).await.unwrap().secrets.version,
        saved.secrets.version
    );
    assert!(matches!(
        store.get_key("key_missing").await,
        Err(StoreError::NotFound)
    ));

    // A policy change is versioned and synced too.
    let (current, version) = store.get_policy().await.unwrap().unwrap();
    let stricter = Policy {
        block_legacy_keys: true,
        ..current
    };
    store
        .replace_policy(
            (current, version),
            stricter,
            &tollgate::store::records::Actor::system("test"),
            6000,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .replace_policy(
                (current, version),
                stricter,
                &tollgate::store::records::Actor::system("test"),
                6001
            )
            .await,
        Err(StoreError::Conflict)
    ));
    let delta = store.changes_since(snapshot.version).await.unwrap();
    assert_eq!(delta.policy, Some(stricter));

    // Usage from two replicas adds up; last_used_at keeps the latest.
    let id = made[0].0.id.clone();
    for (count, at) in [(3, 7000), (4, 6500)] {
        let batch = UsageBatch {
            hour: 0,
            counts: vec![
                (id.clone(), 20_000, "allowed", count),
                (id.clone(), 20_000, "ip_not_allowed", 1),
            ],
            last_used: vec![(id.clone(), at)],
            exceeded: Vec::new(),
        };
        store.add_usage(&batch).await.unwrap();
    }
    let usage = store.usage_of(&id, 19_999).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].outcomes["allowed"], 7);
    assert_eq!(usage[0].total, 9);
    assert_eq!(
        store.get_key(&id).await.unwrap().last_used_at.unwrap().0,
        7000
    );

    // Idempotency: reserve once, then report in-progress, then replay.
    assert_eq!(
        store
            .reserve_idempotency("k", "POST /keys", "h1", 1, 0)
            .await
            .unwrap(),
        Idempotent::Reserved
    );
    assert_eq!(
        store
            .reserve_idempotency("k", "POST /keys", "h1", 2, 0)
            .await
            .unwrap(),
        Idempotent::InProgress
    );
    store
        .complete_idempotency("k", "POST /keys", 201, "{}")
        .await
        .unwrap();
    assert!(matches!(
        store
            .reserve_idempotency("k", "POST /keys", "h1", 3, 0)
            .await
            .unwrap(),
        Idempotent::Done { status: 201, .. }
    ));
    // Past its window the key is forgotten.
    assert_eq!(
        store
            .reserve_idempotency("k", "POST /keys", "h2", 10, 5)
            .await
            .unwrap(),
        Idempotent::Reserved
    );

    // Every change is audited, newest first, and no secret is in any entry.
    let audit = store
        .list_audit(&Default::default(), None, 100)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions.first(), Some(&"policy.update"));
    assert_eq!(actions.iter().filter(|a| **a == "key.create").count(), 3);
    let text = serde_json::to_string(&audit).unwrap();
    for (_, minted) in &made {
        assert!(!text.contains(&minted.secret));
    }
}

/// A full load reads keys a page at a time as one JSON document per page; it must build
/// the snapshot an incremental sync of the same changes builds, on either backend.
async fn full_load_matches_incremental_sync(url: StoreUrl) {
    let config = Config::parse(
        "permissions: [accounts:read, accounts:write]\n\
         roles:\n  reader: [accounts:read]\n\
         infrastructure_ips: [10.9.0.0/16]\n",
    )
    .unwrap();
    let rules = KeyRules::new(&config);
    let store = Store::open(&url).await.unwrap();
    store.seed_policy(policy(), 1).await.unwrap();
    let inputs = [
        serde_json::json!({"name": "plain", "permissions": ["accounts:read"]}),
        serde_json::json!({"name": "both", "permissions": ["accounts:write", "accounts:read"],
            "ip_allowlist": ["192.0.2.0/24", "2001:db8::1"], "allow_infrastructure_ips": true,
            "expires_at": "2099-01-01T00:00:00Z",
            "rate_limit": {"per_minute": 7, "per_day": 70}}),
        serde_json::json!({"name": "legacy", "type": "legacy", "role": "reader"}),
        serde_json::json!({"name": "rotated", "permissions": ["accounts:read"]}),
        serde_json::json!({"name": "revoked", "permissions": ["accounts:write"]}),
        serde_json::json!({"name": "one address", "permissions": ["accounts:read"],
            "ip_allowlist": ["192.0.2.7"]}),
    ];
    let mut saved = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let change = rules
            .create(
                serde_json::from_value(input).unwrap(),
                &policy(),
                1000 + i as i64,
            )
            .unwrap();
        saved.push(
            store
                .insert_key(
                    &change.record,
                    &tollgate::store::records::Actor::system("test"),
                    1000,
                )
                .await
                .unwrap(),
        );
    }
    let grace = serde_json::from_value(serde_json::json!({"grace": "1h"})).unwrap();
    let rotated = rules.rotate(&saved[3], grace, &policy(), 2000).unwrap();
    store
        .replace_key(
            &saved[3],
            &rotated.record,
            "key.rotate",
            &tollgate::store::records::Actor::system("test"),
            &rotated.retired,
            2000,
        )
        .await
        .unwrap();
    let revoked = rules.revoke(&saved[4], 2001).unwrap();
    store
        .replace_key(
            &saved[4],
            &revoked.record,
            "key.revoke",
            &tollgate::store::records::Actor::system("test"),
            &[],
            2001,
        )
        .await
        .unwrap();

    // Pages of two, in (version, id) order, every key once.
    let upto = store.latest_version().await.unwrap();
    let mut builder = SnapshotBuilder::new(&config);
    let mut load = builder.start_full(saved.len());
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store.key_page(upto, after.clone(), 2).await.unwrap();
        let rows = page.rows().unwrap();
        assert!(rows.len() <= 2);
        builder.add_keys(&mut load, &rows);
        for row in &rows {
            let stored = store.get_key(&row.id).await.unwrap();
            assert_eq!(row.secrets, stored.secrets, "{}", row.id);
            assert_eq!(row.version, stored.version);
            assert_eq!(row.revoked, stored.revoked_at.is_some());
            assert_eq!(row.expires_at, stored.expires_at.map(|t| t.0));
            assert_eq!(row.rate_limit, stored.rate_limit);
            assert_eq!(row.role.as_deref(), stored.role.as_deref());
            seen.push((row.version, row.id.to_string()));
        }
        match rows.last() {
            Some(last) if rows.len() == 2 => after = Some((last.version, last.id.to_string())),
            _ => break,
        }
    }
    let mut ordered = seen.clone();
    ordered.sort();
    ordered.dedup();
    assert_eq!(
        seen, ordered,
        "pages come in (version, id) order, each key once"
    );
    assert_eq!(seen.len(), saved.len());
    let rest = store.other_changes(0, upto).await.unwrap();
    let full = builder.finish_full(load, policy(), rest);

    let mut builder = SnapshotBuilder::new(&config);
    let incremental = builder.apply(
        &Snapshot::empty(policy()),
        store.changes_since(0).await.unwrap(),
    );
    assert_eq!(full.version, incremental.version);
    for key in &saved {
        let stored = store.get_key(&key.id).await.unwrap();
        let mut digests = vec![key.secrets.digest, stored.secrets.digest];
        digests.extend(stored.secrets.grace_digest);
        for digest in digests {
            assert_eq!(
                describe(full.by_digest(&digest)),
                describe(incremental.by_digest(&digest)),
                "{}",
                key.name
            );
        }
        let (a, b) = (
            full.by_id(&key.id).unwrap(),
            incremental.by_id(&key.id).unwrap(),
        );
        assert_eq!(
            (
                &a.client_id,
                a.permissions_header(),
                a.environment,
                a.expires_at()
            ),
            (
                &b.client_id,
                b.permissions_header(),
                b.environment,
                b.expires_at()
            )
        );
        assert_eq!(
            (a.revoked, a.rate_limit(), a.secret_version()),
            (b.revoked, b.rate_limit(), b.secret_version())
        );
        for addr in [
            "192.0.2.7",
            "192.0.2.8",
            "2001:db8::1",
            "10.9.1.1",
            "127.0.0.1",
        ] {
            let addr = addr.parse().unwrap();
            assert_eq!(
                a.allowlist().allows(addr),
                b.allowlist().allows(addr),
                "{} {addr}",
                key.name
            );
        }
    }
    // Spot checks that the comparison compares something.
    let both = full.by_id(&saved[1].id).unwrap();
    assert_eq!(both.permissions_header(), "accounts:read accounts:write");
    assert!(both.allowlist().allows("10.9.1.1".parse().unwrap()));
    assert!(!both.allowlist().allows("127.0.0.1".parse().unwrap()));
    assert_eq!(both.rate_limit().map(|t| t.per_minute), Some(7));
    assert_eq!(
        full.by_id(&saved[2].id).unwrap().permissions_header(),
        "accounts:read"
    );
    assert!(matches!(
        full.by_digest(&saved[3].secrets.digest),
        Some(KeyEntry::Secret { grace: Some(_), .. })
    ));
    assert!(full.by_id(&saved[4].id).unwrap().revoked);

    // A row whose JSON columns were damaged by hand loads with nothing granted; the other
    // keys load as before.
    let raw_url = match &url {
        StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        StoreUrl::Postgres(url) => url.clone(),
    };
    let raw = sqlx::AnyPool::connect(&raw_url).await.unwrap();
    sqlx::query(
        "UPDATE keys SET permissions = $1, ip_allowlist = $2, rate_limit = $3 WHERE id = $4",
    )
    .bind("not json")
    .bind("[1, 2")
    .bind("{\"per_minute\": \"many\"}")
    .bind(&saved[1].id)
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let mut builder = SnapshotBuilder::new(&config);
    let mut load = builder.start_full(saved.len());
    let page = store.key_page(upto, None, 100).await.unwrap();
    let rows = page.rows().unwrap();
    assert_eq!(rows.len(), saved.len());
    builder.add_keys(&mut load, &rows);
    let damaged = builder.finish_full(load, policy(), store.other_changes(0, upto).await.unwrap());
    let both = damaged.by_id(&saved[1].id).unwrap();
    assert_eq!(both.permissions_header(), "");
    assert_eq!(both.rate_limit(), None);
    // A damaged allowlist closes the key rather than opening it to every address.
    for addr in ["192.0.2.7", "10.9.1.1", "127.0.0.1"] {
        assert!(!both.allowlist().allows(addr.parse().unwrap()), "{addr}");
    }
    let incremental = SnapshotBuilder::new(&config).apply(
        &Snapshot::empty(policy()),
        store.changes_since(0).await.unwrap(),
    );
    let both = incremental.by_id(&saved[1].id).unwrap();
    assert!(!both.allowlist().allows("192.0.2.7".parse().unwrap()));
    assert_eq!(both.permissions_header(), "");
    assert!(store.get_key(&saved[1].id).await.unwrap().ip_allowlist[0].starts_with("unreadable"));
    assert_eq!(
        damaged.by_id(&saved[0].id).unwrap().permissions_header(),
        "accounts:read"
    );
}

/// What a digest resolves to, comparably.
fn describe(entry: Option<KeyEntry<'_>>) -> Option<(String, Option<i64>)> {
    entry.map(|entry| match entry {
        KeyEntry::Secret { credential, grace } => (
            format!("secret {}", credential.id),
            grace.map(|grace| grace.until),
        ),
        KeyEntry::Retired { key_id } => (format!("retired {key_id}"), None),
    })
}

#[tokio::test]
async fn full_load_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    full_load_matches_incremental_sync(StoreUrl::Sqlite(dir.path().join("t.db"))).await;
}

#[tokio::test]
async fn full_load_on_postgres() {
    let db = TestDatabase::create();
    full_load_matches_incremental_sync(StoreUrl::Postgres(db.url.clone())).await;
}

#[tokio::test]
async fn the_embedded_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    // The file and its folder are created on first start.
    let path = dir.path().join("nested/folder/tollgate.db");
    exercise(StoreUrl::Sqlite(path.clone())).await;
    assert!(path.exists());
}

#[tokio::test]
async fn the_postgres_store() {
    let db = TestDatabase::create();
    exercise(StoreUrl::Postgres(db.url.clone())).await;
}

/// The balance the store holds for key `id`.
async fn stored_remaining(store: &Store, id: &str) -> u64 {
    let key = store.get_key(id).await.unwrap();
    key.credits.unwrap().balance.remaining
}

/// Balances the data plane writes back (SPEC 15) reach every snapshot through the change
/// feed alone: the key's row keeps its version, so a sync reads one narrow row per balance,
/// and no operator's stale copy of the key puts an older balance back.
async fn balances_written_back(url: StoreUrl) {
    use tollgate::policy::rate_limit::credits::Balance;
    use tollgate::policy::rate_limit::CallerKey;
    use tollgate::short_id::ShortId;
    use tollgate::store::records::Actor;

    let config = Config::parse(CONFIG).unwrap();
    let rules = KeyRules::new(&config);
    let store = Store::open(&url).await.unwrap();
    store.seed_policy(policy(), 1).await.unwrap();
    let input = serde_json::from_value(serde_json::json!({
        "name": "metered", "permissions": ["accounts:read"], "credits": {"remaining": 100}
    }))
    .unwrap();
    let change = rules.create(input, &policy(), 1000).unwrap();
    let actor = Actor::system("test");
    let saved = store
        .insert_key(&change.record, &actor, 1000)
        .await
        .unwrap();
    let mut builder = SnapshotBuilder::new(&config);
    let first = builder.apply(
        &Snapshot::empty(policy()),
        store.changes_since(0).await.unwrap(),
    );
    let id = ShortId::new(&saved.id);
    let remaining = |snapshot: &Snapshot| snapshot.key_credits(&id).unwrap().balance.remaining;
    assert_eq!(remaining(&first), 100);

    let stored = saved.credits.unwrap().balance;
    let spent = |remaining: u64, generation: i64| {
        vec![(
            CallerKey::Key(id.clone()),
            Balance {
                remaining,
                generation,
                ..stored
            },
        )]
    };
    store
        .save_balances(&spent(60, stored.generation), 2000)
        .await
        .unwrap();
    let after = store.get_key(&saved.id).await.unwrap();
    assert_eq!(
        after.version, saved.version,
        "a write-back is not a change of the key"
    );
    assert_eq!(after.credits.unwrap().balance.remaining, 60);
    let changes = store.changes_since(first.version).await.unwrap();
    assert!(changes.keys.is_empty(), "{:?}", changes.keys);
    assert_eq!(changes.balances.len(), 1);
    assert_eq!(changes.balances[0].0, saved.id);
    let second = builder.apply(&first, changes);
    assert_eq!(remaining(&second), 60);
    assert!(second.version > first.version);

    // A balance of an older generation (an operator set another since) is not written.
    store
        .save_balances(&spent(5, stored.generation - 1), 2100)
        .await
        .unwrap();
    assert_eq!(stored_remaining(&store, &saved.id).await, 60);

    // An operator's change made from a copy read before the write-back keeps the balance.
    let mut renamed = saved.clone();
    renamed.name = "renamed".into();
    store
        .replace_key(&saved, &renamed, "key.update", &actor, &[], 3000)
        .await
        .unwrap();
    let stored_now = store.get_key(&saved.id).await.unwrap();
    assert_eq!(stored_now.name, "renamed");
    assert_eq!(stored_now.credits.unwrap().balance.remaining, 60);
    let third = builder.apply(&second, store.changes_since(second.version).await.unwrap());
    assert_eq!(remaining(&third), 60);

    // A change of credits (a new generation) is the operator's to make.
    let mut topped_up = stored_now.clone();
    let mut credits = topped_up.credits.unwrap();
    credits.balance.remaining = 500;
    credits.balance.generation += 1;
    topped_up.credits = Some(credits);
    store
        .replace_key(&stored_now, &topped_up, "key.credits", &actor, &[], 4000)
        .await
        .unwrap();
    assert_eq!(stored_remaining(&store, &saved.id).await, 500);
    let fourth = builder.apply(&third, store.changes_since(third.version).await.unwrap());
    assert_eq!(remaining(&fourth), 500);
}

#[tokio::test]
async fn balances_written_back_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    balances_written_back(StoreUrl::Sqlite(dir.path().join("t.db"))).await;
}

#[tokio::test]
async fn balances_written_back_on_postgres() {
    let db = TestDatabase::create();
    balances_written_back(StoreUrl::Postgres(db.url.clone())).await;
}
