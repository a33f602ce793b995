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

    // Create three keys; list them in pages of two.
    let mut made = Vec::new();
    for i in 0..3 {
        let input = serde_json::from_value(
            serde_json::json!({"name": format!("k{i}"), "permissions": ["accounts:read"]}),
        )
        .unwrap();
        let change = rules.create(input, &policy(), 1000 + i).unwrap();
        let saved = store
            .insert_key(&change.record, "test", 1000 + i)
            .await
            .unwrap();
        made.push((saved, change.minted.unwrap()));
    }
    let first = store.list_keys(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let last = first.last().unwrap();
    let rest = store
        .list_keys(Some((last.created_at.0, last.id.clone())), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, made[2].0.id);

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
            "test",
            &rotated.retired,
            5000,
        )
        .await
        .unwrap();
    // Writing from a stale read is refused, not lost.
    let stale = rules.revoke(key, 5001).unwrap();
    assert!(matches!(
        store
            .replace_key(key, &stale.record, "key.revoke", "test", &[], 5001)
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
        .replace_policy((current, version), stricter, "test", 6000)
        .await
        .unwrap();
    assert!(matches!(
        store
            .replace_policy((current, version), stricter, "test", 6001)
            .await,
        Err(StoreError::Conflict)
    ));
    let delta = store.changes_since(snapshot.version).await.unwrap();
    assert_eq!(delta.policy, Some(stricter));

    // Usage from two replicas adds up; last_used_at keeps the latest.
    let id = made[0].0.id.clone();
    for (count, at) in [(3, 7000), (4, 6500)] {
        let batch = UsageBatch {
            counts: vec![
                (id.clone(), 20_000, "allowed", count),
                (id.clone(), 20_000, "ip_not_allowed", 1),
            ],
            last_used: vec![(id.clone(), at)],
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
    let audit = store.list_audit(None, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions.first(), Some(&"policy.update"));
    assert_eq!(actions.iter().filter(|a| **a == "key.create").count(), 3);
    let text = serde_json::to_string(&audit).unwrap();
    for (_, minted) in &made {
        assert!(!text.contains(&minted.secret));
    }
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
