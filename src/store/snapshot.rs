//! The immutable view the data plane reads: credentials by digest and by id, and the
//! policy. A large shared base plus a small overlay of recent changes, so a sync with a
//! million keys copies only what changed.

use super::keys::KeyChanges;
use super::records::{KeyRecord, KeyType, Policy};
use crate::auth::api_key::{Digest, DigestBuildHasher};
use crate::config::{parse_cidr, Config, Environment, Tier};
use crate::policy::ip_allowlist::Allowlist;
use crate::policy::permissions::{Catalog, PermissionSet};
use crate::usage::UsageSlot;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::Arc;

/// What the data plane needs of a key.
#[derive(Debug)]
pub struct Credential {
    pub id: Arc<str>,
    pub client_id: Arc<str>,
    pub key_type: KeyType,
    pub permissions: Arc<PermissionSet>,
    /// `X-Tollgate-Permissions`: the names, space separated.
    pub permissions_header: Arc<str>,
    pub environment: Environment,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub allowlist: Allowlist,
    pub rate_limit: Option<Tier>,
    pub secret_version: i64,
    pub usage: UsageSlot,
}

/// What a digest resolves to.
#[derive(Debug, Clone)]
pub enum KeyEntry {
    /// A key's secret; `grace_until` is set for the previous secret after a rotation.
    Secret {
        credential: Arc<Credential>,
        grace_until: Option<i64>,
    },
    /// A secret replaced by rotation: it answers `key_revoked`.
    Retired { key_id: Arc<str> },
}

#[derive(Debug, Default, Clone)]
struct Index {
    by_digest: HashMap<Digest, KeyEntry, DigestBuildHasher>,
    by_id: HashMap<Arc<str>, Arc<Credential>, foldhash::quality::RandomState>,
}

impl Index {
    fn len(&self) -> usize {
        self.by_id.len() + self.by_digest.len()
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

    pub fn by_digest(&self, digest: &Digest) -> Option<&KeyEntry> {
        self.overlay
            .by_digest
            .get(digest)
            .or_else(|| self.base.by_digest.get(digest))
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Credential>> {
        self.overlay
            .by_id
            .get(id)
            .or_else(|| self.base.by_id.get(id))
    }

    pub fn active_keys(&self, key_type: KeyType) -> u64 {
        self.counts[key_type as usize]
    }
}

/// A full load in progress.
pub struct FullLoad {
    index: Index,
    counts: [u64; 2],
}

/// Puts a key's current secret (and its previous one, while in grace) in `index`.
fn insert_secrets(index: &mut Index, record: &KeyRecord, credential: &Arc<Credential>) {
    index.by_digest.insert(
        record.secrets.digest,
        KeyEntry::Secret {
            credential: credential.clone(),
            grace_until: None,
        },
    );
    if let (Some(digest), Some(until)) = (record.secrets.grace_digest, record.secrets.grace_until) {
        index.by_digest.insert(
            digest,
            KeyEntry::Secret {
                credential: credential.clone(),
                grace_until: Some(until),
            },
        );
    }
}

/// Turns key records into credentials; holds what the config says about permissions.
pub struct SnapshotBuilder {
    catalog: Catalog,
    roles: HashMap<String, PermissionSet>,
    infrastructure: Vec<IpNet>,
    /// Interned permission sets with their header value: many keys share few sets.
    interned: HashMap<PermissionSet, (Arc<PermissionSet>, Arc<str>)>,
    allowlists: HashMap<(Vec<String>, bool), Allowlist>,
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
            interned: HashMap::new(),
            allowlists: HashMap::new(),
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
        let key = (entries.to_vec(), infrastructure);
        if let Some(found) = self.allowlists.get(&key) {
            return found.clone();
        }
        let nets = entries.iter().filter_map(|n| parse_cidr(n)).collect();
        let list = Allowlist::new(
            nets,
            infrastructure.then_some(self.infrastructure.as_slice()),
        );
        self.allowlists.insert(key, list.clone());
        list
    }

    fn credential(&mut self, record: &KeyRecord, previous: Option<&Credential>) -> Credential {
        // Permissions the config no longer declares are dropped, never widened.
        let set = match record.key_type {
            KeyType::FineGrained => {
                let known = record
                    .permissions
                    .iter()
                    .filter(|p| self.catalog.contains(p));
                self.catalog.set(known).unwrap_or_default()
            }
            KeyType::Legacy => record
                .role
                .as_ref()
                .and_then(|role| self.roles.get(role))
                .cloned()
                .unwrap_or_default(),
        };
        let (permissions, permissions_header) = self.intern(set);
        let allowlist = self.allowlist(&record.ip_allowlist, record.allow_infrastructure_ips);
        Credential {
            id: previous.map_or_else(|| Arc::from(record.id.as_str()), |p| p.id.clone()),
            client_id: Arc::from(record.client_id.as_str()),
            key_type: record.key_type,
            permissions,
            permissions_header,
            environment: Environment::parse(&record.environment).unwrap_or(Environment::Live),
            expires_at: record.expires_at.map(|t| t.0),
            revoked: record.revoked_at.is_some(),
            allowlist,
            rate_limit: record.rate_limit.map(|r| Tier {
                per_minute: r.per_minute,
                per_day: r.per_day,
            }),
            secret_version: record.secrets.version,
            usage: UsageSlot::carried_from(previous.map(|p| &p.usage)),
        }
    }

    /// Starts a full load: keys are added page by page straight into a new base.
    pub fn start_full(&self, expected: usize) -> FullLoad {
        FullLoad {
            index: Index {
                by_digest: HashMap::with_capacity_and_hasher(
                    expected,
                    DigestBuildHasher::default(),
                ),
                by_id: HashMap::with_capacity_and_hasher(expected, Default::default()),
            },
            counts: [0, 0],
        }
    }

    pub fn add_keys(&mut self, load: &mut FullLoad, records: &[KeyRecord]) {
        for record in records {
            let credential = Arc::new(self.credential(record, None));
            if !credential.revoked {
                load.counts[credential.key_type as usize] += 1;
            }
            insert_secrets(&mut load.index, record, &credential);
            load.index.by_id.insert(credential.id.clone(), credential);
        }
    }

    /// The snapshot of a full load, with everything else (`rest`: retired digests, policy,
    /// apps, users, revoked grants) applied on top.
    pub fn finish_full(&mut self, load: FullLoad, policy: Policy, rest: KeyChanges) -> Snapshot {
        let loaded = Snapshot {
            version: 0,
            policy,
            base: Arc::new(load.index),
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
            overlay.by_digest.insert(
                digest,
                KeyEntry::Retired {
                    key_id: Arc::from(key_id),
                },
            );
        }
        for record in &changes.keys {
            let previous = current.by_id(&record.id).cloned();
            if let Some(previous) = &previous {
                if !previous.revoked {
                    counts[previous.key_type as usize] -= 1;
                }
            }
            let credential = Arc::new(self.credential(record, previous.as_deref()));
            if !credential.revoked {
                counts[credential.key_type as usize] += 1;
            }
            insert_secrets(&mut overlay, record, &credential);
            overlay.by_id.insert(credential.id.clone(), credential);
        }
        let (base, overlay) = if overlay.len() > (current.base.len() / 8).max(4096) {
            let mut merged = (*current.base).clone();
            merged.by_digest.extend(overlay.by_digest);
            merged.by_id.extend(overlay.by_id);
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
                    deleted: app.deleted_at.is_some(),
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
    use crate::store::records::Timestamp;

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
