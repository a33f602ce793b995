//! The immutable view the data plane reads: credentials by digest and by id, and the
//! policy. A large shared base plus a small overlay of recent changes, so a sync with a
//! million keys copies only what changed.

use super::changes::KeyChanges;
use super::keys::stored_allowlist;
use super::records::{KeyRow, KeyType, Policy, Secrets, StoredList};
use crate::auth::api_key::{Digest, DigestBuildHasher};
use crate::config::{parse_cidr, Config, Environment, Tier};
use crate::policy::ip_allowlist::Allowlist;
use crate::policy::permissions::{Catalog, PermissionSet};
use crate::short_id::ShortId;
use crate::usage::UsageSlot;
use hashbrown::hash_table::{self, HashTable};
use ipnet::IpNet;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

type Fast = foldhash::fast::RandomState;

/// What the data plane needs of a key.
#[derive(Debug)]
pub struct Credential {
    pub id: ShortId,
    /// The current secret's digest.
    pub digest: Digest,
    pub client_id: ShortId,
    pub key_type: KeyType,
    pub permissions: Arc<PermissionSet>,
    /// `X-Tollgate-Permissions`: the names, space separated.
    pub permissions_header: Arc<str>,
    pub environment: Environment,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub allowlist: Allowlist,
    /// The key's own limits; boxed, as few keys have them.
    pub rate_limit: Option<Box<Tier>>,
    pub secret_version: i64,
    pub usage: UsageSlot,
}

/// What a digest resolves to.
#[derive(Debug, Clone, Copy)]
pub enum KeyEntry<'a> {
    /// A key's secret; `grace` is set for the previous secret after a rotation.
    Secret {
        credential: &'a Arc<Credential>,
        grace: Option<Grace>,
    },
    /// A secret replaced by rotation: it answers `key_revoked`.
    Retired { key_id: &'a ShortId },
}

/// The window in which a rotated-out secret still works: from the rotation until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    pub since: i64,
    pub until: i64,
}

/// A digest that is not a key's current secret.
#[derive(Debug, Clone)]
enum OtherSecret {
    Grace {
        credential: Arc<Credential>,
        grace: Grace,
    },
    Retired {
        key_id: ShortId,
    },
}

/// Credentials by current digest and by id. Both tables hold only a pointer, hashed by
/// the digest or id the credential itself carries, so a key costs two 8-byte slots
/// rather than a copy of its digest and id in each table. The few digests that are not a
/// current secret (a previous one in its grace period, retired ones) live beside them.
/// A digest is in at most one of `by_digest` and `others`: the last insert wins.
#[derive(Debug, Clone, Default)]
struct Index {
    by_digest: HashTable<Arc<Credential>>,
    by_id: HashTable<Arc<Credential>>,
    others: HashMap<Digest, OtherSecret, DigestBuildHasher>,
    ids: foldhash::quality::RandomState,
}

/// The hash the digest tables use: [`DigestBuildHasher`]'s (its first 8 bytes).
fn digest_hash(digest: &Digest) -> u64 {
    DigestBuildHasher::default().hash_one(digest)
}

impl Index {
    /// The index of a full load, in load order. The digest table (with the other
    /// secrets) and the id table are independent: they are built on two threads.
    fn of_full_load(load: &FullLoad) -> Index {
        let (mut index, by_id) = std::thread::scope(|scope| {
            let ids = scope.spawn(|| Index::ids_of(&load.credentials));
            let mut index = Index {
                by_digest: HashTable::with_capacity(load.credentials.len()),
                ..Index::default()
            };
            let mut graces = load.graces.iter().peekable();
            for (position, credential) in load.credentials.iter().enumerate() {
                while let Some((_, digest, other)) = graces.next_if(|(at, ..)| *at == position) {
                    index.insert_other(*digest, other.clone());
                }
                index.insert_digest(credential.clone());
            }
            (index, ids.join())
        });
        // The id thread cannot panic short of a bug; if it did, the ids are built here.
        let by_id = by_id.unwrap_or_else(|_| Index::ids_of(&load.credentials));
        index.by_id = by_id.by_id;
        index.ids = by_id.ids;
        index
    }

    /// An index of `credentials` by id only.
    fn ids_of(credentials: &[Arc<Credential>]) -> Index {
        let mut index = Index {
            by_id: HashTable::with_capacity(credentials.len()),
            ..Index::default()
        };
        for credential in credentials {
            index.insert_id(credential.clone());
        }
        index
    }

    fn len(&self) -> usize {
        self.by_id.len() + self.by_digest.len() + self.others.len()
    }

    fn digest(&self, digest: &Digest) -> Option<KeyEntry<'_>> {
        if let Some(credential) = self
            .by_digest
            .find(digest_hash(digest), |c| c.digest == *digest)
        {
            return Some(KeyEntry::Secret {
                credential,
                grace: None,
            });
        }
        self.others.get(digest).map(|other| match other {
            OtherSecret::Grace { credential, grace } => KeyEntry::Secret {
                credential,
                grace: Some(*grace),
            },
            OtherSecret::Retired { key_id } => KeyEntry::Retired { key_id },
        })
    }

    fn id(&self, id: &str) -> Option<&Arc<Credential>> {
        self.by_id.find(self.ids.hash_one(id), |c| &*c.id == id)
    }

    /// `credential` under its id and as the current secret of its digest.
    fn insert(&mut self, credential: Arc<Credential>) {
        self.insert_digest(credential.clone());
        self.insert_id(credential);
    }

    fn insert_digest(&mut self, credential: Arc<Credential>) {
        let digest = credential.digest;
        self.others.remove(&digest);
        match self.by_digest.entry(
            digest_hash(&digest),
            |c| c.digest == digest,
            |c| digest_hash(&c.digest),
        ) {
            hash_table::Entry::Occupied(mut slot) => *slot.get_mut() = credential,
            hash_table::Entry::Vacant(slot) => {
                slot.insert(credential);
            }
        }
    }

    fn insert_id(&mut self, credential: Arc<Credential>) {
        let ids = &self.ids;
        match self.by_id.entry(
            ids.hash_one(&*credential.id),
            |c| c.id == credential.id,
            |c| ids.hash_one(&*c.id),
        ) {
            hash_table::Entry::Occupied(mut slot) => *slot.get_mut() = credential,
            hash_table::Entry::Vacant(slot) => {
                slot.insert(credential);
            }
        }
    }

    fn insert_other(&mut self, digest: Digest, other: OtherSecret) {
        if let Ok(current) = self
            .by_digest
            .find_entry(digest_hash(&digest), |c| c.digest == digest)
        {
            current.remove();
        }
        self.others.insert(digest, other);
    }

    /// Everything in `newer` over what is here.
    fn merge(&mut self, newer: &Index) {
        for credential in newer.by_digest.iter() {
            self.insert_digest(credential.clone());
        }
        for credential in newer.by_id.iter() {
            self.insert_id(credential.clone());
        }
        for (digest, other) in &newer.others {
            self.insert_other(*digest, other.clone());
        }
    }
}

/// An OAuth app as the data plane needs it.
#[derive(Debug)]
pub struct AppInfo {
    pub scopes: PermissionSet,
    pub deleted: bool,
}

/// Apps, users and revoked grants: what user tokens and revocations are checked against.
#[derive(Debug, Default, Clone)]
struct OAuthIndex {
    apps: HashMap<String, Arc<AppInfo>>,
    /// User id to whether the user is disabled.
    users: HashMap<String, bool>,
    revoked_grants: std::collections::HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The last store change included.
    pub version: i64,
    pub policy: Policy,
    base: Arc<Index>,
    overlay: Arc<Index>,
    oauth: Arc<OAuthIndex>,
    /// Active (not revoked) keys by type: fine-grained, legacy.
    counts: [u64; 2],
}

impl Snapshot {
    pub fn empty(policy: Policy) -> Snapshot {
        Snapshot {
            version: 0,
            policy,
            base: Arc::default(),
            overlay: Arc::default(),
            oauth: Arc::default(),
            counts: [0, 0],
        }
    }

    pub fn grant_revoked(&self, grant_id: &str) -> bool {
        self.oauth.revoked_grants.contains(grant_id)
    }

    /// `Some(disabled)` for a known user.
    pub fn user_disabled(&self, user_id: &str) -> Option<bool> {
        self.oauth.users.get(user_id).copied()
    }

    pub fn app(&self, client_id: &str) -> Option<&Arc<AppInfo>> {
        self.oauth.apps.get(client_id)
    }

    pub fn by_digest(&self, digest: &Digest) -> Option<KeyEntry<'_>> {
        self.overlay
            .digest(digest)
            .or_else(|| self.base.digest(digest))
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Credential>> {
        self.overlay.id(id).or_else(|| self.base.id(id))
    }

    pub fn active_keys(&self, key_type: KeyType) -> u64 {
        self.counts[key_type as usize]
    }
}

/// A full load in progress: its credentials, indexed once all are read, and the previous
/// secrets in their grace period, each with the number of credentials read before it.
pub struct FullLoad {
    credentials: Vec<Arc<Credential>>,
    graces: Vec<(usize, Digest, OtherSecret)>,
    counts: [u64; 2],
}

/// A key's previous secret, while in its grace period.
fn grace_of(
    secrets: &Secrets,
    rotated_at: Option<i64>,
    credential: &Arc<Credential>,
) -> Option<(Digest, OtherSecret)> {
    let (Some(digest), Some(until)) = (secrets.grace_digest, secrets.grace_until) else {
        return None;
    };
    let grace = Grace {
        since: rotated_at.unwrap_or(until),
        until,
    };
    Some((
        digest,
        OtherSecret::Grace {
            credential: credential.clone(),
            grace,
        },
    ))
}

/// Puts a key's current secret (and its previous one, while in grace) in `index`.
fn insert_secrets(
    index: &mut Index,
    secrets: &Secrets,
    rotated_at: Option<i64>,
    credential: Arc<Credential>,
) {
    if let Some((digest, other)) = grace_of(secrets, rotated_at, &credential) {
        index.insert_other(digest, other);
    }
    index.insert(credential);
}

/// Turns key records into credentials; holds what the config says about permissions.
pub struct SnapshotBuilder {
    catalog: Catalog,
    roles: HashMap<String, PermissionSet>,
    infrastructure: Vec<IpNet>,
    /// Interned permission sets with their header value: many keys share few sets.
    interned: HashMap<PermissionSet, (Arc<PermissionSet>, Arc<str>), Fast>,
    /// Without and with the infrastructure addresses.
    allowlists: [HashMap<Vec<String>, Allowlist, Fast>; 2],
    /// A full load's stored JSON texts, each parsed once.
    permissions_by_text: HashMap<String, (Arc<PermissionSet>, Arc<str>), Fast>,
    allowlists_by_text: [HashMap<String, Allowlist, Fast>; 2],
}

impl SnapshotBuilder {
    pub fn new(config: &Config) -> Self {
        let catalog = Catalog::new(&config.permissions);
        let roles = config
            .roles
            .iter()
            .map(|(name, permissions)| (name.clone(), catalog.set(permissions).unwrap_or_default()))
            .collect();
        SnapshotBuilder {
            catalog,
            roles,
            infrastructure: config.infrastructure_ips.clone(),
            interned: HashMap::default(),
            allowlists: Default::default(),
            permissions_by_text: HashMap::default(),
            allowlists_by_text: Default::default(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn intern(&mut self, set: PermissionSet) -> (Arc<PermissionSet>, Arc<str>) {
        if let Some(found) = self.interned.get(&set) {
            return found.clone();
        }
        let header: Vec<&str> = self.catalog.names(&set).map(|name| &**name).collect();
        let entry = (Arc::new(set.clone()), Arc::from(header.join(" ")));
        self.interned.insert(set, entry.clone());
        entry
    }

    /// Keys share few allowlists: each distinct one is built once.
    fn allowlist(&mut self, entries: &[String], infrastructure: bool) -> Allowlist {
        if let Some(found) = self.allowlists[usize::from(infrastructure)].get(entries) {
            return found.clone();
        }
        let nets: Option<Vec<IpNet>> = entries.iter().map(|n| parse_cidr(n)).collect();
        let list = match nets {
            Some(nets) => Allowlist::new(
                nets,
                infrastructure.then_some(self.infrastructure.as_slice()),
            ),
            None => {
                tracing::warn!(allowlist = ?entries, "a stored IP allowlist is unreadable: its key allows no address");
                Allowlist::nothing()
            }
        };
        self.allowlists[usize::from(infrastructure)].insert(entries.to_vec(), list.clone());
        list
    }

    /// A key's permission set with its header value.
    fn permissions(&mut self, row: &KeyRow<'_>) -> (Arc<PermissionSet>, Arc<str>) {
        match (row.key_type, &row.permissions) {
            (KeyType::Legacy, _) => self.intern(self.legacy(row.role.as_deref())),
            (KeyType::FineGrained, StoredList::Parsed(names)) => {
                self.intern(self.fine_grained(names))
            }
            (KeyType::FineGrained, StoredList::Text(text)) => {
                if let Some(found) = self.permissions_by_text.get(&**text) {
                    return found.clone();
                }
                let names: Vec<String> = serde_json::from_str(text).unwrap_or_default();
                let entry = self.intern(self.fine_grained(&names));
                self.permissions_by_text
                    .insert(text.to_string(), entry.clone());
                entry
            }
        }
    }

    /// A key's allowlist, with the infrastructure addresses when it asks for them.
    fn row_allowlist(&mut self, row: &KeyRow<'_>) -> Allowlist {
        let infrastructure = row.allow_infrastructure_ips;
        match &row.ip_allowlist {
            StoredList::Parsed(entries) => self.allowlist(entries, infrastructure),
            StoredList::Text(text) => {
                let cache = usize::from(infrastructure);
                if let Some(found) = self.allowlists_by_text[cache].get(&**text) {
                    return found.clone();
                }
                let list = self.allowlist(&stored_allowlist(text), infrastructure);
                self.allowlists_by_text[cache].insert(text.to_string(), list.clone());
                list
            }
        }
    }

    /// The permissions of a fine-grained key: those the config no longer declares are
    /// dropped, never widened.
    fn fine_grained<S: AsRef<str>>(&self, names: &[S]) -> PermissionSet {
        let known = names.iter().filter(|p| self.catalog.contains(p.as_ref()));
        self.catalog.set(known).unwrap_or_default()
    }

    /// A legacy key's permissions: its role's.
    fn legacy(&self, role: Option<&str>) -> PermissionSet {
        role.and_then(|role| self.roles.get(role))
            .cloned()
            .unwrap_or_default()
    }

    /// The credential of `row`; `previous` is the same key in the current snapshot, whose
    /// id and usage counters carry over.
    fn credential(&mut self, row: &KeyRow<'_>, previous: Option<&Credential>) -> Credential {
        let (permissions, permissions_header) = self.permissions(row);
        Credential {
            id: previous.map_or_else(|| ShortId::new(&row.id), |p| p.id.clone()),
            digest: row.secrets.digest,
            client_id: ShortId::new(&row.client_id),
            key_type: row.key_type,
            permissions,
            permissions_header,
            environment: Environment::parse(&row.environment).unwrap_or(Environment::Live),
            expires_at: row.expires_at,
            revoked: row.revoked,
            allowlist: self.row_allowlist(row),
            rate_limit: row.rate_limit.map(|r| {
                Box::new(Tier {
                    per_minute: r.per_minute,
                    per_day: r.per_day,
                })
            }),
            secret_version: row.secrets.version,
            usage: UsageSlot::carried_from(previous.map(|p| &p.usage)),
        }
    }

    /// Starts a full load: keys are added page by page straight into a new base.
    pub fn start_full(&self, expected: usize) -> FullLoad {
        FullLoad {
            credentials: Vec::with_capacity(expected),
            graces: Vec::new(),
            counts: [0, 0],
        }
    }

    pub fn add_keys(&mut self, load: &mut FullLoad, rows: &[KeyRow<'_>]) {
        for row in rows {
            let credential = Arc::new(self.credential(row, None));
            if !credential.revoked {
                load.counts[credential.key_type as usize] += 1;
            }
            if let Some((digest, other)) = grace_of(&row.secrets, row.rotated_at, &credential) {
                load.graces.push((load.credentials.len(), digest, other));
            }
            load.credentials.push(credential);
        }
    }

    /// The snapshot of a full load, with everything else (`rest`: retired digests, policy,
    /// apps, users, revoked grants) applied on top.
    pub fn finish_full(&mut self, load: FullLoad, policy: Policy, rest: KeyChanges) -> Snapshot {
        // Only a full load reads stored texts: keys with allowlists of their own would
        // otherwise keep a copy of each for the life of the process.
        self.permissions_by_text = HashMap::default();
        self.allowlists_by_text = Default::default();
        let loaded = Snapshot {
            version: 0,
            policy,
            base: Arc::new(Index::of_full_load(&load)),
            overlay: Arc::default(),
            oauth: Arc::default(),
            counts: load.counts,
        };
        self.apply(&loaded, rest)
    }

    /// The snapshot after `changes`. Recent changes go to the overlay; once it grows past
    /// an eighth of the base, both are merged into a new base.
    pub fn apply(&mut self, current: &Snapshot, changes: KeyChanges) -> Snapshot {
        let mut overlay = (*current.overlay).clone();
        let mut counts = current.counts;
        for (digest, key_id) in changes.retired {
            let key_id = ShortId::new(&key_id);
            overlay.insert_other(digest, OtherSecret::Retired { key_id });
        }
        for record in &changes.keys {
            let previous = current.by_id(&record.id).cloned();
            if let Some(previous) = &previous {
                if !previous.revoked {
                    counts[previous.key_type as usize] -= 1;
                }
            }
            let credential = Arc::new(self.credential(&KeyRow::of(record), previous.as_deref()));
            if !credential.revoked {
                counts[credential.key_type as usize] += 1;
            }
            insert_secrets(
                &mut overlay,
                &record.secrets,
                record.rotated_at.map(|t| t.0),
                credential,
            );
        }
        let (base, overlay) = if overlay.len() > (current.base.len() / 8).max(4096) {
            let mut merged = (*current.base).clone();
            merged.merge(&overlay);
            (Arc::new(merged), Arc::default())
        } else {
            (current.base.clone(), Arc::new(overlay))
        };
        let oauth = if changes.clients.is_empty()
            && changes.users.is_empty()
            && changes.revoked_grants.is_empty()
        {
            current.oauth.clone()
        } else {
            let mut oauth = (*current.oauth).clone();
            for app in &changes.clients {
                let known = app.scopes.iter().filter(|s| self.catalog.contains(s));
                let info = AppInfo {
                    scopes: self.catalog.set(known).unwrap_or_default(),
                    deleted: app.deleted,
                };
                oauth.apps.insert(app.client_id.clone(), Arc::new(info));
            }
            oauth.users.extend(changes.users.iter().cloned());
            oauth
                .revoked_grants
                .extend(changes.revoked_grants.iter().cloned());
            Arc::new(oauth)
        };
        Snapshot {
            version: changes.version.max(current.version),
            policy: changes.policy.unwrap_or(current.policy),
            base,
            overlay,
            oauth,
            counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::digest;
    use crate::store::records::{KeyRecord, Timestamp};

    fn config() -> Config {
        Config::parse("permissions: [a, b]\nroles:\n  admin: [a, b]\n").unwrap()
    }

    fn record(id: &str, secret: &str) -> KeyRecord {
        let mut record = crate::store::keys_for_tests::record(id, digest(secret.as_bytes()));
        record.permissions = vec!["b".into(), "a".into()];
        record
    }

    fn changes(version: i64, keys: Vec<KeyRecord>, retired: Vec<(Digest, String)>) -> KeyChanges {
        KeyChanges {
            version,
            keys,
            retired,
            ..KeyChanges::default()
        }
    }

    fn policy() -> Policy {
        Policy {
            block_legacy_keys: false,
            max_key_lifetime: None,
        }
    }

    #[test]
    fn rotation_retires_the_old_digest_and_keeps_the_identity() {
        let mut builder = SnapshotBuilder::new(&config());
        let first = builder.apply(
            &Snapshot::empty(policy()),
            changes(1, vec![record("k1", "old")], vec![]),
        );
        assert_eq!(first.active_keys(KeyType::FineGrained), 1);
        let Some(KeyEntry::Secret { credential, .. }) = first.by_digest(&digest(b"old")) else {
            panic!("old secret should resolve")
        };
        assert_eq!(&*credential.permissions_header, "a b");

        let mut rotated = record("k1", "new");
        rotated.secrets.version = 2;
        let second = builder.apply(
            &first,
            changes(2, vec![rotated], vec![(digest(b"old"), "k1".into())]),
        );
        assert!(matches!(
            second.by_digest(&digest(b"old")),
            Some(KeyEntry::Retired { .. })
        ));
        assert!(matches!(
            second.by_digest(&digest(b"new")),
            Some(KeyEntry::Secret { .. })
        ));
        assert_eq!(second.by_id("k1").unwrap().secret_version, 2);
        assert_eq!(second.active_keys(KeyType::FineGrained), 1);
        // The previous snapshot is untouched.
        assert!(matches!(
            first.by_digest(&digest(b"old")),
            Some(KeyEntry::Secret { .. })
        ));
    }

    #[test]
    fn revocation_is_counted_and_merging_keeps_every_entry() {
        let mut builder = SnapshotBuilder::new(&config());
        let many: Vec<KeyRecord> = (0..5000)
            .map(|i| record(&format!("k{i}"), &format!("s{i}")))
            .collect();
        let loaded = builder.apply(&Snapshot::empty(policy()), changes(1, many, vec![]));
        assert_eq!(loaded.active_keys(KeyType::FineGrained), 5000);
        let mut revoked = record("k7", "s7");
        revoked.revoked_at = Some(Timestamp(5));
        let after = builder.apply(&loaded, changes(2, vec![revoked], vec![]));
        assert_eq!(after.active_keys(KeyType::FineGrained), 4999);
        assert!(after.by_id("k7").unwrap().revoked);
        assert!(after.by_digest(&digest(b"s4999")).is_some());
        assert_eq!(after.version, 2);
    }

    #[test]
    fn merging_the_overlay_keeps_rotations_over_the_base() {
        let mut builder = SnapshotBuilder::new(&config());
        let many = |from: usize| -> Vec<KeyRecord> {
            (from..from + 5000)
                .map(|i| record(&format!("k{i}"), &format!("s{i}")))
                .collect()
        };
        // 5000 keys: past the overlay's limit, so they are merged into the base.
        let loaded = builder.apply(&Snapshot::empty(policy()), changes(1, many(0), vec![]));
        let mut graced = record("k1", "s1-new");
        graced.secrets.grace_digest = Some(digest(b"s1"));
        graced.secrets.grace_until = Some(99);
        let retired = record("k2", "s2-new");
        let rotated = builder.apply(
            &loaded,
            changes(2, vec![graced, retired], vec![(digest(b"s2"), "k2".into())]),
        );
        let check = |snapshot: &Snapshot| {
            assert!(matches!(
                snapshot.by_digest(&digest(b"s1")),
                Some(KeyEntry::Secret { credential, grace: Some(Grace { until: 99, .. }) })
                    if credential.digest == digest(b"s1-new")
            ));
            assert!(matches!(
                snapshot.by_digest(&digest(b"s2")),
                Some(KeyEntry::Retired { key_id }) if &**key_id == "k2"
            ));
            for current in [&b"s1-new"[..], b"s2-new", b"s3"] {
                assert!(matches!(
                    snapshot.by_digest(&digest(current)),
                    Some(KeyEntry::Secret { grace: None, .. })
                ));
            }
            assert_eq!(snapshot.by_id("k1").unwrap().digest, digest(b"s1-new"));
        };
        check(&rotated);
        // 5000 more keys force the overlay (with the rotations) into a new base.
        let merged = builder.apply(&rotated, changes(3, many(5000), vec![]));
        check(&merged);
        assert!(merged.overlay.len() == 0, "the overlay was merged");
        assert_eq!(merged.active_keys(KeyType::FineGrained), 10_000);
        assert!(merged.by_digest(&digest(b"s9999")).is_some());
        // The snapshot before is untouched.
        assert!(matches!(
            loaded.by_digest(&digest(b"s2")),
            Some(KeyEntry::Secret { grace: None, .. })
        ));
    }

    #[test]
    fn legacy_keys_take_their_roles_permissions() {
        let mut builder = SnapshotBuilder::new(&config());
        let mut legacy = record("k1", "s");
        legacy.key_type = KeyType::Legacy;
        legacy.permissions = vec![];
        legacy.role = Some("admin".into());
        let snapshot = builder.apply(&Snapshot::empty(policy()), changes(1, vec![legacy], vec![]));
        assert_eq!(&*snapshot.by_id("k1").unwrap().permissions_header, "a b");
        assert_eq!(snapshot.active_keys(KeyType::Legacy), 1);
    }
}
