//! The records the store keeps, in the shape the admin API shows them (secrets never).

use crate::auth::api_key::Digest;
use crate::clock::rfc3339;
use crate::policy::rate_limit::credits::{Balance, Credits, Refill};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::time::Duration;

/// Unix milliseconds, shown as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(self.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    FineGrained,
    Legacy,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::FineGrained => "fine_grained",
            KeyType::Legacy => "legacy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "fine_grained" => Some(KeyType::FineGrained),
            "legacy" => Some(KeyType::Legacy),
            _ => None,
        }
    }
}

/// A key's status in one word, as lists filter by it and the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    /// Active, and expiring within [`KeyStatus::EXPIRING_WITHIN_MS`].
    Expiring,
    Expired,
    Revoked,
}

impl KeyStatus {
    /// A key is "expiring" in the last 7 days before its `expires_at`.
    pub const EXPIRING_WITHIN_MS: i64 = 7 * 86_400_000;

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expiring => "expiring",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            KeyStatus::Active,
            KeyStatus::Expiring,
            KeyStatus::Expired,
            KeyStatus::Revoked,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// The status of a key revoked at `revoked_at` and expiring at `expires_at`, at `now`.
    pub fn of(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> Self {
        match (revoked_at, expires_at) {
            (Some(_), _) => KeyStatus::Revoked,
            (None, Some(at)) if at <= now => KeyStatus::Expired,
            (None, Some(at)) if at <= now + Self::EXPIRING_WITHIN_MS => KeyStatus::Expiring,
            _ => KeyStatus::Active,
        }
    }
}

/// A key's own limits, replacing its tier's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    pub per_minute: u64,
    pub per_day: u64,
}

/// What the store knows of a key's secrets: digests only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    pub digest: Digest,
    /// The previous secret, still accepted until `grace_until` after a rotation with grace.
    pub grace_digest: Option<Digest>,
    pub grace_until: Option<i64>,
    /// Bumped by every rotation; access tokens carry it, so rotation invalidates them.
    pub version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    pub permissions: Vec<String>,
    pub role: Option<String>,
    pub environment: String,
    pub start: String,
    pub ip_allowlist: Vec<String>,
    pub allow_infrastructure_ips: bool,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub rotated_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub rate_limit: Option<RateLimitOverride>,
    pub metadata: serde_json::Value,
    /// The client certificate (SHA-256 of its DER, lowercase hex) the key works with only.
    pub client_cert_sha256: Option<String>,
    /// The owner (SPEC 15) whose shared windows the key also counts in.
    pub owner_id: Option<String>,
    /// The key's credits, as last written back (the data plane's may be a few seconds on).
    pub credits: Option<Credits>,
    #[serde(skip)]
    pub secrets: Secrets,
    /// The change that last wrote this record.
    #[serde(skip)]
    pub version: i64,
}

/// An owner (SPEC 15): a customer its keys are issued to. Its `rate_limit` is shared by
/// all its keys.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerRecord {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub rate_limit: Option<RateLimitOverride>,
    /// The owner's credits, spent by all its keys.
    pub credits: Option<Credits>,
    pub metadata: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The change that last wrote this record.
    #[serde(skip)]
    pub version: i64,
}

/// A key as a snapshot is built from it, borrowed from a full-load page or from a
/// [`KeyRecord`]. A page leaves permissions and the allowlist as their stored JSON text:
/// keys share few of each, so the snapshot parses each distinct text once.
#[derive(Debug)]
pub struct KeyRow<'a> {
    pub id: Cow<'a, str>,
    pub client_id: Cow<'a, str>,
    pub key_type: KeyType,
    /// Permission names.
    pub permissions: StoredList<'a>,
    pub role: Option<Cow<'a, str>>,
    pub environment: Cow<'a, str>,
    pub secrets: Secrets,
    /// Addresses and CIDRs.
    pub ip_allowlist: StoredList<'a>,
    pub allow_infrastructure_ips: bool,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// When the current secret replaced the previous one (the start of a grace period).
    pub rotated_at: Option<i64>,
    pub rate_limit: Option<RateLimitOverride>,
    pub version: i64,
    /// The SHA-256 of the only client certificate the key works with.
    pub client_cert: Option<[u8; 32]>,
    pub owner_id: Option<Cow<'a, str>>,
    pub credits: Option<Credits>,
}

/// A stored certificate binding. One that cannot be read binds the key to no certificate
/// anyone can present (all zero bits), so the key is refused rather than unbound.
pub fn client_cert_binding(text: &str) -> [u8; 32] {
    let mut fingerprint = [0u8; 32];
    if hex::decode_to_slice(text, &mut fingerprint).is_err() {
        return [0u8; 32];
    }
    fingerprint
}

/// A list column: the JSON text a page carries, or a record's parsed list.
#[derive(Debug)]
pub enum StoredList<'a> {
    Text(Cow<'a, str>),
    Parsed(&'a [String]),
}

impl<'a> KeyRow<'a> {
    /// A record seen as a row, borrowing from it.
    pub fn of(record: &'a KeyRecord) -> KeyRow<'a> {
        KeyRow {
            id: Cow::Borrowed(&record.id),
            client_id: Cow::Borrowed(&record.client_id),
            key_type: record.key_type,
            permissions: StoredList::Parsed(&record.permissions),
            role: record.role.as_deref().map(Cow::Borrowed),
            environment: Cow::Borrowed(&record.environment),
            secrets: record.secrets.clone(),
            ip_allowlist: StoredList::Parsed(&record.ip_allowlist),
            allow_infrastructure_ips: record.allow_infrastructure_ips,
            expires_at: record.expires_at.map(|t| t.0),
            revoked: record.revoked_at.is_some(),
            rotated_at: record.rotated_at.map(|t| t.0),
            rate_limit: record.rate_limit,
            version: record.version,
            client_cert: record
                .client_cert_sha256
                .as_deref()
                .map(client_cert_binding),
            owner_id: record.owner_id.as_deref().map(Cow::Borrowed),
            credits: record.credits,
        }
    }
}

/// The organisation-wide key policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub block_legacy_keys: bool,
    pub max_key_lifetime: Option<Duration>,
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "block_legacy_keys": self.block_legacy_keys,
            "max_key_lifetime": self.max_key_lifetime.map(crate::config::format_duration),
        })
        .serialize(serializer)
    }
}

/// Who made a change, as every audit entry names them (SPEC section 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Actor {
    /// `operator`, `token`, `bootstrap` or `system`.
    pub kind: String,
    pub id: Option<String>,
    pub name: String,
}

impl Actor {
    pub fn operator(id: &str, name: &str) -> Actor {
        Actor {
            kind: "operator".into(),
            id: Some(id.into()),
            name: name.into(),
        }
    }

    pub fn token(id: &str, name: &str) -> Actor {
        Actor {
            kind: "token".into(),
            id: Some(id.into()),
            name: name.into(),
        }
    }

    /// The bootstrap token of `admin.token_env`.
    pub fn bootstrap() -> Actor {
        Actor {
            kind: "bootstrap".into(),
            id: None,
            name: "bootstrap token".into(),
        }
    }

    /// tollgate itself: `name` says which part (`sign-in`, `bootstrap`, `demo`...).
    pub fn system(name: &str) -> Actor {
        Actor {
            kind: "system".into(),
            id: None,
            name: name.into(),
        }
    }

    /// An actor as stored; entries written before actors were recorded name a string.
    pub fn from_stored(text: &str) -> Actor {
        serde_json::from_str(text).unwrap_or_else(|_| Actor {
            kind: "bootstrap".into(),
            id: None,
            name: text.into(),
        })
    }
}

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: Actor,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Requests of one key on one UTC day, by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageDay {
    pub date: String,
    pub outcomes: std::collections::BTreeMap<String, i64>,
    pub total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// Holds no secret; PKCE is its only proof.
    Public,
    /// Authenticates with a client secret.
    Confidential,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Public => "public",
            ClientType::Confidential => "confidential",
        }
    }
}

/// An OAuth app of the authorization-code flow.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    #[serde(skip)]
    pub secret_digest: Option<Digest>,
    #[serde(skip)]
    pub version: i64,
}

/// A person who signs in on the authorization page.
#[derive(Debug, Clone, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub disabled: bool,
    pub created_at: Timestamp,
    /// When the password last changed (never the password itself).
    pub password_changed_at: Option<Timestamp>,
    /// argon2id, PHC string format.
    #[serde(skip)]
    pub password_hash: String,
    #[serde(skip)]
    pub version: i64,
}

/// A member of the workbench: someone who signs in to the console and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorRecord {
    pub id: String,
    pub email: String,
    pub name: String,
    /// A built-in role or one of `admin.roles`.
    pub role: String,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub password_changed_at: Option<Timestamp>,
    /// argon2id, PHC string format.
    #[serde(skip)]
    pub password_hash: String,
    #[serde(skip)]
    pub version: i64,
}

/// An admin token, for automation: digest-only, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct AdminTokenRecord {
    pub id: String,
    pub name: String,
    /// The first characters, for recognising a token.
    pub start: String,
    /// The permissions given, when no role is.
    pub permissions: Vec<String>,
    pub role: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: Actor,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    #[serde(skip)]
    pub digest: Digest,
    #[serde(skip)]
    pub version: i64,
}

/// A console sign-in, as the store keeps it (the id and CSRF token only as digests).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub operator_id: String,
    pub csrf_digest: Digest,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

/// What an authorization code or refresh token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub expires_at: i64,
    /// Codes only: where the code was sent, and the PKCE S256 challenge.
    pub redirect_uri: String,
    pub code_challenge: String,
}

/// Credits from their four columns; `None` when `remaining` is NULL (no credits).
pub fn credits_from_columns(
    remaining: Option<i64>,
    refill: Option<&str>,
    period: Option<i64>,
    generation: Option<i64>,
) -> Option<Credits> {
    Some(Credits {
        balance: Balance {
            remaining: remaining?.max(0) as u64,
            period: period.unwrap_or(0),
            generation: generation.unwrap_or(0),
        },
        refill: refill.and_then(|text| serde_json::from_str::<Refill>(text).ok()),
    })
}

/// The four columns of `credits`, all NULL for none.
pub fn credits_columns(
    credits: Option<&Credits>,
) -> (Option<i64>, Option<String>, Option<i64>, Option<i64>) {
    match credits {
        None => (None, None, None, None),
        Some(credits) => (
            Some(i64::try_from(credits.balance.remaining).unwrap_or(i64::MAX)),
            credits
                .refill
                .map(|refill| serde_json::to_string(&refill).unwrap_or_default()),
            Some(credits.balance.period),
            Some(credits.balance.generation),
        ),
    }
}
