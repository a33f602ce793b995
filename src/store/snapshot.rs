//! The immutable view the data plane reads: keys by digest and by id, and the policy. A
//! large shared base plus a small overlay of recent changes, so a sync with a million keys
//! copies only what changed.

use super::changes::KeyChanges;
use super::key_table::{stored_expiry, stored_version, KeyTable, OtherSecret};
use super::keys::stored_allowlist;
use super::records::{KeyRow, KeyType, Policy, Secrets, StoredList};
use crate::auth::api_key::Digest;
use crate::config::{parse_cidr, Config, Environment, Tier};
use crate::policy::ip_allowlist::Allowlist;
use crate::policy::permissions::{Catalog, PermissionSet};
use crate::policy::rate_limit::credits::Credits;
use crate::short_id::ShortId;
use crate::usage::UsageSlot;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::Arc;

pub use super::key_table::{Credential, Grace, KeyEntry, KeyOwner, KeyRef, KeyRules};

type Fast = foldhash::fast::RandomState;

/// What an owner's keys share: its windows and its credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerTerms {
    pub rate_limit: Option<Tier>,
    pub credits: Option<Credits>,
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
    base: Arc<KeyTable>,
    overlay: Arc<KeyTable>,
    oauth: Arc<OAuthIndex>,
    /// What owners with limits or credits share among their keys.
    owners: Arc<HashMap<ShortId, OwnerTerms, Fast>>,
    /// The stored credits of keys that have them.
    key_credits: Arc<HashMap<ShortId, Credits, Fast>>,
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
            owners: Arc::default(),
            key_credits: Arc::default(),
            counts: [0, 0],
        }
    }

    /// What an owner's keys share, when it has limits or credits.
    pub fn owner_terms(&self, owner: &ShortId) -> Option<&OwnerTerms> {
        self.owners.get(owner)
    }

    /// A key's stored credits, when it has them.
    pub fn key_credits(&self, key: &ShortId) -> Option<Credits> {
        if self.key_credits.is_empty() {
            return None;
        }
        self.key_credits.get(key).copied()
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

    pub fn by_id(&self, id: &str) -> Option<KeyRef> {
        self.by_short_id(&ShortId::new(id))
    }

    pub fn by_short_id(&self, id: &ShortId) -> Option<KeyRef> {
        self.overlay.id(id).or_else(|| self.base.id(id))
    }

    pub fn active_keys(&self, key_type: KeyType) -> u64 {
        self.counts[key_type as usize]
    }
}

/// A full load in progress: its records, indexed once all are read, and the previous
/// secrets in their grace period, each with the position of its record.
pub struct FullLoad {
    table: KeyTable,
    graces: Vec<(Digest, OtherSecret)>,
    counts: [u64; 2],
    credits: HashMap<ShortId, Credits, Fast>,
}

/// A key's previous secret, while in its grace period, for the record at `at`.
fn grace_of(secrets: &Secrets, rotated_at: Option<i64>, at: u32) -> Option<(Digest, OtherSecret)> {
    let (Some(digest), Some(until)) = (secrets.grace_digest, secrets.grace_until) else {
        return None;
    };
    let grace = Grace {
        since: rotated_at.unwrap_or(until),
        until,
    };
    Some((digest, OtherSecret::Grace { at, grace }))
}

/// Puts a key's current secret (and its previous one, while in grace) in `table`.
fn insert_secrets(
    table: &mut KeyTable,
    secrets: &Secrets,
    rotated_at: Option<i64>,
    credential: Credential,
) {
    let at = table.upsert(credential);
    if let Some((digest, other)) = grace_of(secrets, rotated_at, at) {
        table.insert_other(digest, other);
    }
}

/// What names a key's rules: its permission set's and allowlist's addresses (both are
/// interned), its limits, its certificate binding and its owner.
type RulesName = (
    usize,
    usize,
    Option<Tier>,
    Option<[u8; 32]>,
    Option<ShortId>,
);

/// Turns key records into credentials; holds what the config says about permissions.
pub struct SnapshotBuilder {
    catalog: Catalog,
    roles: HashMap<String, PermissionSet>,
    infrastructure: Vec<IpNet>,
    /// Interned permission sets with their header value: many keys share few sets.
    interned: HashMap<PermissionSet, (Arc<PermissionSet>, http::HeaderValue), Fast>,
    /// Without and with the infrastructure addresses.
    allowlists: [HashMap<Vec<String>, Allowlist, Fast>; 2],
    /// A full load's stored JSON texts, each parsed once.
    permissions_by_text: HashMap<String, (Arc<PermissionSet>, http::HeaderValue), Fast>,
    allowlists_by_text: [HashMap<String, Allowlist, Fast>; 2],
    /// Interned rules, by what they are made of.
    rules: HashMap<RulesName, Arc<KeyRules>, Fast>,
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
            rules: HashMap::default(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn intern(&mut self, set: PermissionSet) -> (Arc<PermissionSet>, http::HeaderValue) {
        if let Some(found) = self.interned.get(&set) {
            return found.clone();
        }
        let entry = (Arc::new(set.clone()), self.catalog.header(&set));
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
    fn permissions(&mut self, row: &KeyRow<'_>) -> (Arc<PermissionSet>, http::HeaderValue) {
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

    /// What `row` shares with other keys, built once per distinct combination.
    fn rules(&mut self, row: &KeyRow<'_>) -> Arc<KeyRules> {
        let (permissions, permissions_header) = self.permissions(row);
        let allowlist = self.row_allowlist(row);
        let rate_limit = row.rate_limit.map(|r| Tier {
            per_minute: r.per_minute,
            per_day: r.per_day,
        });
        // Permission sets and allowlists are interned, so their addresses name them.
        let owner = row.owner_id.as_deref().map(ShortId::new);
        let name = (
            Arc::as_ptr(&permissions) as usize,
            allowlist.identity(),
            rate_limit,
            row.client_cert,
            owner.clone(),
        );
        self.rules
            .entry(name)
            .or_insert_with(|| {
                Arc::new(KeyRules {
                    permissions,
                    permissions_header,
                    allowlist,
                    rate_limit,
                    client_cert: row.client_cert,
                    owner: owner.and_then(|id| {
                        let header = http::HeaderValue::from_str(&id.as_str()).ok()?;
                        Some(KeyOwner { id, header })
                    }),
                })
            })
            .clone()
    }

    /// The credential of `row`; `previous` is the same key in the current snapshot, whose
    /// id and usage counters carry over.
    fn credential(&mut self, row: &KeyRow<'_>, previous: Option<&Credential>) -> Credential {
        Credential {
            id: previous.map_or_else(|| ShortId::new(&row.id), |p| p.id.clone()),
            digest: row.secrets.digest,
            client_id: ShortId::new(&row.client_id),
            key_type: row.key_type,
            rules: self.rules(row),
            environment: Environment::parse(&row.environment).unwrap_or(Environment::UNKNOWN),
            expires_at: stored_expiry(row.expires_at),
            revoked: row.revoked,
            secret_version: stored_version(row.secrets.version),
            usage: UsageSlot::carried_from(previous.map(|p| &p.usage)),
        }
    }

    /// Starts a full load: keys are added page by page straight into a new base.
    pub fn start_full(&self, expected: usize) -> FullLoad {
        FullLoad {
            table: KeyTable::with_capacity(expected),
            graces: Vec::new(),
            counts: [0, 0],
            credits: HashMap::default(),
        }
    }

    pub fn add_keys(&mut self, load: &mut FullLoad, rows: &[KeyRow<'_>]) {
        for row in rows {
            let credential = self.credential(row, None);
            if !credential.revoked {
                load.counts[credential.key_type as usize] += 1;
            }
            if let Some(credits) = row.credits {
                load.credits.insert(credential.id.clone(), credits);
            }
            let at = load.table.push(credential);
            if let Some(grace) = grace_of(&row.secrets, row.rotated_at, at) {
                load.graces.push(grace);
            }
        }
    }

    /// The snapshot of a full load, with everything else (`rest`: retired digests, policy,
    /// apps, users, revoked grants) applied on top.
    pub fn finish_full(&mut self, load: FullLoad, policy: Policy, rest: KeyChanges) -> Snapshot {
        // Only a full load reads stored texts: keys with allowlists of their own would
        // otherwise keep a copy of each for the life of the process.
        self.permissions_by_text = HashMap::default();
        self.allowlists_by_text = Default::default();
        let FullLoad {
            mut table,
            graces,
            counts,
            credits,
        } = load;
        table.index_all();
        for (digest, other) in graces {
            table.insert_other(digest, other);
        }
        let loaded = Snapshot {
            version: 0,
            policy,
            base: Arc::new(table),
            overlay: Arc::default(),
            oauth: Arc::default(),
            owners: Arc::default(),
            key_credits: Arc::new(credits),
            counts,
        };
        self.apply(&loaded, rest)
    }

    /// The snapshot after `changes`. Recent changes go to the overlay; once it grows past
    /// an eighth of the base, both are merged into a new base.
    pub fn apply(&mut self, current: &Snapshot, changes: KeyChanges) -> Snapshot {
        let mut overlay = (*current.overlay).clone();
        let mut counts = current.counts;
        let mut key_credits = None;
        for (digest, key_id) in changes.retired {
            let key_id = ShortId::new(&key_id);
            overlay.insert_other(digest, OtherSecret::Retired { key_id });
        }
        // Balances the data plane wrote back: the key's record is unchanged, so only its
        // entry here is. A key also in `changes.keys` is set again below.
        for (id, credits) in &changes.balances {
            let id = ShortId::new(id);
            if current.key_credits.contains_key(&id) {
                let map = key_credits.get_or_insert_with(|| (*current.key_credits).clone());
                map.insert(id, *credits);
            }
        }
        for record in &changes.keys {
            let previous = current.by_id(&record.id);
            if let Some(previous) = &previous {
                if !previous.revoked {
                    counts[previous.key_type as usize] -= 1;
                }
            }
            let credential = self.credential(&KeyRow::of(record), previous.as_deref());
            if !credential.revoked {
                counts[credential.key_type as usize] += 1;
            }
            let known = current.key_credits.contains_key(&credential.id);
            if record.credits.is_some() || known {
                let map = key_credits.get_or_insert_with(|| (*current.key_credits).clone());
                match record.credits {
                    Some(credits) => map.insert(credential.id.clone(), credits),
                    None => map.remove(&credential.id),
                };
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
        let owners = if changes.owners.is_empty() {
            current.owners.clone()
        } else {
            let mut owners = (*current.owners).clone();
            for owner in &changes.owners {
                let id = ShortId::new(&owner.id);
                let terms = OwnerTerms {
                    rate_limit: owner.rate_limit.map(|limit| Tier {
                        per_minute: limit.per_minute,
                        per_day: limit.per_day,
                    }),
                    credits: owner.credits,
                };
                match terms.rate_limit.is_some() || terms.credits.is_some() {
                    true => owners.insert(id, terms),
                    false => owners.remove(&id),
                };
            }
            Arc::new(owners)
        };
        Snapshot {
            version: changes.version.max(current.version),
            policy: changes.policy.unwrap_or(current.policy),
            base,
            overlay,
            oauth,
            owners,
            key_credits: key_credits.map_or_else(|| current.key_credits.clone(), Arc::new),
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
        assert_eq!(credential.permissions_header(), "a b");

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
        assert_eq!(second.by_id("k1").unwrap().secret_version(), 2);
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
                Some(KeyEntry::Retired { key_id }) if *key_id == *"k2"
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
        assert_eq!(snapshot.by_id("k1").unwrap().permissions_header(), "a b");
        assert_eq!(snapshot.active_keys(KeyType::Legacy), 1);
    }
}
