//! The keys a snapshot holds: fixed-size records in chunks of [`CHUNK`], found by digest
//! and by id through 4-byte slots. A change copies only the chunk it touches, and a
//! request holds its key as (chunk, position) rather than a pointer of its own.

use super::records::KeyType;
use crate::auth::api_key::{Digest, DigestBuildHasher};
use crate::config::{Environment, Tier};
use crate::policy::ip_allowlist::Allowlist;
use crate::policy::permissions::PermissionSet;
use crate::short_id::ShortId;
use crate::usage::UsageSlot;
use hashbrown::hash_table::{self, HashTable};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::Arc;

/// Records per chunk: 63 × 96 = 6,048 bytes, so a sync that changes one key copies that
/// much, and the requests of two workers share a chunk's reference count only when their
/// keys are among the same 63. With 128-byte records, 64 (exactly 8 KiB) cost 32 bytes a
/// key more than 63, 256 or 1,024, as if mimalloc served it from its next size class
/// (rss.py at 1M keys, restart). The chunks' own cost is under a byte a key.
pub const CHUNK: usize = 63;

/// `expires_at` of a key that never expires.
const NEVER: i64 = i64::MAX;

/// What the data plane needs of a key: 96 bytes (ids packed into 16 each, see
/// [`ShortId`]), with what keys share (permissions, allowlist, limits) behind one pointer.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The current secret's digest.
    pub digest: Digest,
    pub id: ShortId,
    pub client_id: ShortId,
    /// [`NEVER`] for a key without an expiry: see [`stored_expiry`].
    pub(super) expires_at: i64,
    pub rules: Arc<KeyRules>,
    pub usage: UsageSlot,
    /// See [`stored_version`].
    pub(super) secret_version: u32,
    pub key_type: KeyType,
    pub environment: Environment,
    pub revoked: bool,
}

/// What many keys have in common: a few permission sets, allowlists and limits.
#[derive(Debug)]
pub struct KeyRules {
    pub permissions: Arc<PermissionSet>,
    /// `X-Tollgate-Permissions`: the names, space separated, as the header's value.
    pub permissions_header: http::HeaderValue,
    pub allowlist: Allowlist,
    /// The key's own limits, when it has them.
    pub rate_limit: Option<Tier>,
    /// The SHA-256 of the only client certificate the key works with.
    pub client_cert: Option<[u8; 32]>,
    /// The owner whose shared windows the key also counts in.
    pub owner: Option<KeyOwner>,
}

/// A key's owner: its id, and its `X-Tollgate-Owner-Id` value, made once per owner and
/// rules rather than per request.
#[derive(Debug)]
pub struct KeyOwner {
    pub id: ShortId,
    pub header: http::HeaderValue,
}

/// How a key without an expiry is stored.
pub(super) fn stored_expiry(expires_at: Option<i64>) -> i64 {
    expires_at.unwrap_or(NEVER)
}

/// Versions count rotations; one past `u32::MAX` is not a key anyone holds.
pub(super) fn stored_version(version: i64) -> u32 {
    u32::try_from(version).unwrap_or(u32::MAX)
}

impl Credential {
    pub fn expires_at(&self) -> Option<i64> {
        (self.expires_at != NEVER).then_some(self.expires_at)
    }

    pub fn secret_version(&self) -> i64 {
        i64::from(self.secret_version)
    }

    pub fn permissions(&self) -> &Arc<PermissionSet> {
        &self.rules.permissions
    }

    pub fn permissions_header(&self) -> &http::HeaderValue {
        &self.rules.permissions_header
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.rules.allowlist
    }

    pub fn rate_limit(&self) -> Option<Tier> {
        self.rules.rate_limit
    }

    /// The client certificate the key is bound to, if any.
    pub fn client_cert(&self) -> Option<&[u8; 32]> {
        self.rules.client_cert.as_ref()
    }

    /// The owner the key belongs to, if any.
    pub fn owner(&self) -> Option<&KeyOwner> {
        self.rules.owner.as_ref()
    }
}

type Chunk = Vec<Credential>;

/// A key held by a request: its chunk and its position in it.
#[derive(Clone)]
pub struct KeyRef {
    chunk: Arc<Chunk>,
    at: u16,
}

impl Deref for KeyRef {
    type Target = Credential;
    fn deref(&self) -> &Credential {
        &self.chunk[usize::from(self.at)]
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Credential::fmt(self, f)
    }
}

/// What a digest resolves to.
#[derive(Debug)]
pub enum KeyEntry<'a> {
    /// A key's secret; `grace` is set for the previous secret after a rotation.
    Secret {
        credential: KeyRef,
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
pub(super) enum OtherSecret {
    /// The previous secret of the record at `at`.
    Grace {
        at: u32,
        grace: Grace,
    },
    Retired {
        key_id: ShortId,
    },
}

/// Records by current digest and by id. Both tables hold a 4-byte position, hashed by the
/// digest or id the record itself carries. The few digests that are not a current secret
/// (a previous one in its grace period, retired ones) live beside them. A digest is in
/// at most one of `by_digest` and `others`: the last insert wins.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyTable {
    chunks: Vec<Arc<Chunk>>,
    records: u32,
    by_digest: HashTable<u32>,
    by_id: HashTable<u32>,
    others: HashMap<Digest, OtherSecret, DigestBuildHasher>,
    ids: foldhash::quality::RandomState,
}

/// The hash the digest table uses: [`DigestBuildHasher`]'s (its first 8 bytes).
fn digest_hash(digest: &Digest) -> u64 {
    DigestBuildHasher::default().hash_one(digest)
}

/// Points the entry of `table` that `same` recognises at `at`, or adds one.
fn put(
    table: &mut HashTable<u32>,
    hash: u64,
    at: u32,
    same: impl FnMut(&u32) -> bool,
    rehash: impl Fn(&u32) -> u64,
) {
    match table.entry(hash, same, rehash) {
        hash_table::Entry::Occupied(mut slot) => *slot.get_mut() = at,
        hash_table::Entry::Vacant(slot) => {
            slot.insert(at);
        }
    }
}

fn record(chunks: &[Arc<Chunk>], at: u32) -> &Credential {
    let at = at as usize;
    &chunks[at / CHUNK][at % CHUNK]
}

impl KeyTable {
    /// An empty table with room for `expected` records.
    pub(super) fn with_capacity(expected: usize) -> KeyTable {
        KeyTable {
            chunks: Vec::with_capacity(expected.div_ceil(CHUNK)),
            ..KeyTable::default()
        }
    }

    /// Distinct entries: records and other digests.
    pub(super) fn len(&self) -> usize {
        self.records as usize + self.others.len()
    }

    fn key_ref(&self, at: u32) -> KeyRef {
        let at = at as usize;
        KeyRef {
            chunk: self.chunks[at / CHUNK].clone(),
            // Below CHUNK.
            at: (at % CHUNK) as u16,
        }
    }

    /// Appends `credential` without indexing it: a full load indexes once at the end.
    pub(super) fn push(&mut self, credential: Credential) -> u32 {
        let at = self.records;
        if at as usize % CHUNK == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            Arc::make_mut(last).push(credential);
        }
        self.records += 1;
        at
    }

    /// Indexes every record pushed: the digest and the id tables are independent, so they
    /// are built on two threads.
    pub(super) fn index_all(&mut self) {
        let chunks = &self.chunks;
        let count = self.records as usize;
        let ids = &self.ids;
        let (by_digest, by_id) = std::thread::scope(|scope| {
            let by_id = scope.spawn(|| id_table(chunks, count, ids));
            let mut by_digest = HashTable::with_capacity(count);
            for (at, credential) in (0u32..).zip(chunks.iter().flat_map(|c| c.iter())) {
                put(
                    &mut by_digest,
                    digest_hash(&credential.digest),
                    at,
                    |&i| record(chunks, i).digest == credential.digest,
                    |&i| digest_hash(&record(chunks, i).digest),
                );
            }
            // The id thread cannot panic short of a bug; if it did, the ids are built here.
            let by_id = by_id
                .join()
                .unwrap_or_else(|_| id_table(chunks, count, ids));
            (by_digest, by_id)
        });
        self.by_digest = by_digest;
        self.by_id = by_id;
    }

    pub(super) fn digest(&self, digest: &Digest) -> Option<KeyEntry<'_>> {
        let chunks = &self.chunks;
        if let Some(&at) = self.by_digest.find(digest_hash(digest), |&i| {
            record(chunks, i).digest == *digest
        }) {
            return Some(KeyEntry::Secret {
                credential: self.key_ref(at),
                grace: None,
            });
        }
        self.others.get(digest).map(|other| match other {
            OtherSecret::Grace { at, grace } => KeyEntry::Secret {
                credential: self.key_ref(*at),
                grace: Some(*grace),
            },
            OtherSecret::Retired { key_id } => KeyEntry::Retired { key_id },
        })
    }

    fn position(&self, id: &ShortId) -> Option<u32> {
        let chunks = &self.chunks;
        self.by_id
            .find(self.ids.hash_one(id), |&i| record(chunks, i).id == *id)
            .copied()
    }

    pub(super) fn id(&self, id: &ShortId) -> Option<KeyRef> {
        self.position(id).map(|at| self.key_ref(at))
    }

    /// `credential` under its id and as the current secret of its digest, replacing the
    /// record of the same id; its position comes back.
    pub(super) fn upsert(&mut self, credential: Credential) -> u32 {
        let digest = credential.digest;
        let at = match self.position(&credential.id) {
            Some(at) => {
                let slot = at as usize;
                let chunk = Arc::make_mut(&mut self.chunks[slot / CHUNK]);
                let old = std::mem::replace(&mut chunk[slot % CHUNK], credential);
                if old.digest != digest {
                    let hash = digest_hash(&old.digest);
                    if let Ok(entry) = self.by_digest.find_entry(hash, |&i| i == at) {
                        entry.remove();
                    }
                }
                at
            }
            None => {
                let at = self.push(credential);
                let (chunks, ids) = (&self.chunks, &self.ids);
                let id = &record(chunks, at).id;
                self.by_id.insert_unique(ids.hash_one(id), at, |&i| {
                    ids.hash_one(&record(chunks, i).id)
                });
                at
            }
        };
        self.others.remove(&digest);
        let chunks = &self.chunks;
        put(
            &mut self.by_digest,
            digest_hash(&digest),
            at,
            |&i| record(chunks, i).digest == digest,
            |&i| digest_hash(&record(chunks, i).digest),
        );
        at
    }

    pub(super) fn insert_other(&mut self, digest: Digest, other: OtherSecret) {
        let chunks = &self.chunks;
        if let Ok(current) = self.by_digest.find_entry(digest_hash(&digest), |&i| {
            record(chunks, i).digest == digest
        }) {
            current.remove();
        }
        self.others.insert(digest, other);
    }

    /// Everything in `newer` over what is here.
    pub(super) fn merge(&mut self, newer: &KeyTable) {
        let mut moved = Vec::with_capacity(newer.records as usize);
        for credential in newer.chunks.iter().flat_map(|c| c.iter()) {
            moved.push(self.upsert(credential.clone()));
        }
        for (digest, other) in &newer.others {
            let other = match other {
                OtherSecret::Grace { at, grace } => OtherSecret::Grace {
                    at: moved[*at as usize],
                    grace: *grace,
                },
                retired => retired.clone(),
            };
            self.insert_other(*digest, other);
        }
    }
}

/// The id table of the first `count` records.
fn id_table(
    chunks: &[Arc<Chunk>],
    count: usize,
    ids: &foldhash::quality::RandomState,
) -> HashTable<u32> {
    let mut by_id = HashTable::with_capacity(count);
    for (at, credential) in (0u32..).zip(chunks.iter().flat_map(|c| c.iter())) {
        let id = &credential.id;
        put(
            &mut by_id,
            ids.hash_one(id),
            at,
            |&i| record(chunks, i).id == *id,
            |&i| ids.hash_one(&record(chunks, i).id),
        );
    }
    by_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::digest;

    fn key(id: &str, secret: &str) -> Credential {
        Credential {
            digest: digest(secret.as_bytes()),
            id: ShortId::new(id),
            client_id: ShortId::new(&format!("cid_{id}")),
            expires_at: stored_expiry(None),
            rules: Arc::new(KeyRules {
                permissions: Arc::default(),
                permissions_header: http::HeaderValue::from_static(""),
                allowlist: Allowlist::default(),
                rate_limit: None,
                client_cert: None,
                owner: None,
            }),
            usage: UsageSlot::default(),
            secret_version: 1,
            key_type: KeyType::FineGrained,
            environment: Environment::LIVE,
            revoked: false,
        }
    }

    #[test]
    fn a_change_copies_its_chunk_and_leaves_the_table_it_came_from_alone() {
        let mut table = KeyTable::with_capacity(3 * CHUNK);
        for i in 0..3 * CHUNK {
            table.push(key(&format!("k{i}"), &format!("s{i}")));
        }
        table.index_all();
        let before = table.clone();
        // A rotation of a key in the middle chunk: the new digest finds it, the old one
        // no longer does, and its position is kept.
        let middle = CHUNK + CHUNK / 2;
        let (id, old, new) = (
            format!("k{middle}"),
            format!("s{middle}"),
            format!("s{middle}-new"),
        );
        let at = table.upsert(key(&id, &new));
        assert_eq!(at as usize, middle);
        assert!(table.digest(&digest(old.as_bytes())).is_none());
        assert!(matches!(
            table.digest(&digest(new.as_bytes())),
            Some(KeyEntry::Secret { credential, grace: None }) if credential.id == *id
        ));
        assert!(
            Arc::ptr_eq(&table.chunks[0], &before.chunks[0]),
            "untouched chunks are shared"
        );
        assert!(
            !Arc::ptr_eq(&table.chunks[1], &before.chunks[1]),
            "the changed one is copied"
        );
        assert!(matches!(
            before.digest(&digest(old.as_bytes())),
            Some(KeyEntry::Secret { credential, .. }) if credential.id == *id
        ));
        // A new key goes after the others and is found by both.
        let at = table.upsert(key("new", "s-new"));
        assert_eq!(at as usize, 3 * CHUNK);
        assert_eq!(
            table.id(&ShortId::new("new")).map(|k| k.digest),
            Some(digest(b"s-new"))
        );
        assert_eq!(table.len(), 3 * CHUNK + 1);
        // A grace entry merged into another table follows its record to its new position.
        let mut overlay = KeyTable::default();
        let at = overlay.upsert(key("k7", "s7-new"));
        let grace = Grace { since: 1, until: 2 };
        overlay.insert_other(digest(b"s7"), OtherSecret::Grace { at, grace });
        table.merge(&overlay);
        assert!(matches!(
            table.digest(&digest(b"s7")),
            Some(KeyEntry::Secret { credential, grace: Some(_) }) if credential.id == *"k7"
        ));
    }

    #[test]
    fn a_record_is_96_bytes_and_a_request_holds_16() {
        assert_eq!(std::mem::size_of::<Credential>(), 96);
        assert_eq!(std::mem::size_of::<KeyRef>(), 16);
    }
}
