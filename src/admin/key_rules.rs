//! The rules of the key lifecycle (SPEC section 3), as pure functions from a request body,
//! the current record and the policy to the next record. No I/O: tested with any clock.

use super::error::AdminError;
use crate::auth::api_key::{self, Digest, MintedKey};
use crate::auth::base62;
use crate::config::{format_duration, parse_cidr_exact, parse_duration, Config, Environment};
use crate::policy::permissions::Catalog;
use crate::policy::rate_limit::credits::{Credits, Refill};
use crate::store::records::{KeyRecord, KeyType, Policy, RateLimitOverride, Secrets, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The longest a rotated-out secret may keep working.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);
const MAX_NAME: usize = 200;
const MAX_METADATA_BYTES: usize = 8 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "super::not_null")]
    pub key_type: Option<KeyType>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub permissions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub preset: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub role: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub allow_infrastructure_ips: Option<bool>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub expires_at: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub environment: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub rate_limit: Option<RateLimitOverride>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub client_cert_sha256: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub owner_id: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub credits: Option<CreditsInput>,
}

/// Credits as the admin API takes them: a balance and an optional refill.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditsInput {
    pub remaining: u64,
    #[serde(default)]
    pub refill: Option<Refill>,
}

/// Credits from the API's shape, as an operator's change of `generation`.
pub fn check_credits(
    input: CreditsInput,
    generation: i64,
    now: i64,
) -> Result<Credits, AdminError> {
    if input.remaining > MAX_CREDITS
        || input
            .refill
            .is_some_and(|r| r.amount == 0 || r.amount > MAX_CREDITS)
    {
        return Err(AdminError::InvalidRequest(format!(
            "credits: remaining and refill.amount must be 1 to {MAX_CREDITS} (remaining may be 0)"
        )));
    }
    Ok(Credits::new(input.remaining, input.refill, generation, now))
}

/// Reads `credits` of a `PATCH`: `null` removes them, else a new balance and refill.
pub fn patched_credits(
    value: Value,
    current: Option<&Credits>,
    now: i64,
) -> Result<Option<Credits>, AdminError> {
    if value.is_null() {
        return Ok(None);
    }
    let input: CreditsInput = serde_json::from_value(value)
        .map_err(|e| AdminError::InvalidRequest(format!("credits: {e}")))?;
    let generation = current.map_or(0, |c| c.balance.generation) + 1;
    check_credits(input, generation, now).map(Some)
}

/// The largest balance: what the store's signed 64-bit columns and Redis's scripts hold
/// exactly.
pub const MAX_CREDITS: u64 = 1 << 50;

/// `PATCH /keys/{id}`. `rate_limit: null` clears the override, `client_cert_sha256: null`
/// the certificate binding. `expires_at` is not a field:
/// [`parse_patch`] refuses it as `expiry_immutable` before these fields are read, so the
/// list of accepted fields in an unknown-field error never offers it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    #[serde(default, deserialize_with = "super::not_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub permissions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub allow_infrastructure_ips: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limit: Option<Value>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "present")]
    pub client_cert_sha256: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub owner_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub credits: Option<Value>,
}

impl PatchKey {
    /// The owner the patch moves the key to, when it names one (which must exist).
    pub fn new_owner(&self) -> Option<&str> {
        self.owner_id.as_ref().and_then(Value::as_str)
    }
}

/// Reads a `PATCH /keys/{id}` body: `expires_at` changes only by rotation.
pub fn parse_patch(body: &[u8]) -> Result<PatchKey, AdminError> {
    let fields: Map<String, Value> = super::parse_change(body)?;
    if fields.contains_key("expires_at") {
        return Err(AdminError::ExpiryImmutable);
    }
    super::parse_value(Value::Object(fields))
}

/// Distinguishes a field sent as `null` (Some(Null)) from one left out (None).
pub(super) fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    #[serde(default, deserialize_with = "super::not_null")]
    pub expires_at: Option<String>,
    #[serde(default, deserialize_with = "super::not_null")]
    pub grace: Option<String>,
    /// A new allowlist from this rotation on (seed 001 sets allowlists "when creating or
    /// rotating"); left out, the key keeps its own.
    #[serde(default, deserialize_with = "super::not_null")]
    pub ip_allowlist: Option<Vec<String>>,
}

/// What the config says keys may hold.
pub struct KeyRules {
    catalog: Catalog,
    presets: BTreeMap<String, Vec<String>>,
    roles: BTreeSet<String>,
    pub environment: Environment,
    /// The environments keys may be created in.
    pub environments: Vec<Environment>,
    pub key_prefix: String,
}

/// A key change: the new record, the secret to show once (on create and rotate), and
/// digests that stop working.
pub struct KeyChange {
    pub record: KeyRecord,
    pub minted: Option<MintedKey>,
    pub retired: Vec<Digest>,
}

impl KeyRules {
    pub fn new(config: &Config) -> Self {
        KeyRules {
            catalog: Catalog::new(&config.permissions),
            presets: config.presets.clone(),
            roles: config.roles.keys().cloned().collect(),
            environment: config.environment,
            environments: config.environments.clone(),
            key_prefix: config.key_prefix.clone(),
        }
    }

    pub fn knows_permission(&self, name: &str) -> bool {
        self.catalog.contains(name)
    }

    pub fn create(
        &self,
        input: CreateKey,
        policy: &Policy,
        now: i64,
    ) -> Result<KeyChange, AdminError> {
        let name = check_name(&input.name)?;
        let key_type = input.key_type.unwrap_or(KeyType::FineGrained);
        let (permissions, role) = match key_type {
            KeyType::FineGrained => {
                if input.role.is_some() {
                    return Err(AdminError::InvalidRequest(
                        "a fine-grained key takes permissions or a preset, not a role".into(),
                    ));
                }
                let mut wanted: Vec<String> = Vec::new();
                if let Some(preset) = &input.preset {
                    let found = self.presets.get(preset).ok_or_else(|| {
                        AdminError::InvalidRequest(format!("unknown preset \"{preset}\""))
                    })?;
                    wanted.extend(found.iter().cloned());
                }
                wanted.extend(input.permissions.unwrap_or_default());
                (self.check_permissions(wanted)?, None)
            }
            KeyType::Legacy => {
                if policy.block_legacy_keys {
                    return Err(AdminError::LegacyKeysBlocked);
                }
                if input.permissions.is_some() || input.preset.is_some() {
                    return Err(AdminError::InvalidRequest(
                        "a legacy key takes a role, not permissions or a preset".into(),
                    ));
                }
                let role = input.role.ok_or_else(|| {
                    AdminError::InvalidRequest("a legacy key needs a role".into())
                })?;
                if !self.roles.contains(&role) {
                    return Err(AdminError::InvalidRequest(format!(
                        "unknown role \"{role}\""
                    )));
                }
                (Vec::new(), Some(role))
            }
        };
        let environment = match input.environment.as_deref() {
            None => self.environment,
            Some(text) => Environment::parse(text)
                .filter(|environment| self.environments.contains(environment))
                .ok_or_else(|| {
                    let names: Vec<&str> = self.environments.iter().map(|e| e.as_str()).collect();
                    AdminError::InvalidRequest(format!(
                        "environment must be one of this gateway's ({}), not \"{text}\"",
                        names.join(", ")
                    ))
                })?,
        };
        let expires_at = check_expiry(input.expires_at.as_deref(), policy, now)?;
        let minted = api_key::mint(&self.key_prefix, environment);
        let record = KeyRecord {
            id: format!("key_{}", base62::random(20)),
            client_id: format!("cid_{}", base62::random(20)),
            name,
            key_type,
            permissions,
            role,
            environment: environment.as_str().into(),
            start: minted.start.clone(),
            ip_allowlist: check_allowlist(input.ip_allowlist.unwrap_or_default())?,
            allow_infrastructure_ips: input.allow_infrastructure_ips.unwrap_or(false),
            expires_at: expires_at.map(Timestamp),
            created_at: Timestamp(now),
            rotated_at: None,
            revoked_at: None,
            last_used_at: None,
            rate_limit: check_rate_limit(input.rate_limit)?,
            metadata: check_metadata(input.metadata)?,
            client_cert_sha256: input
                .client_cert_sha256
                .as_deref()
                .map(check_fingerprint)
                .transpose()?,
            owner_id: input.owner_id,
            credits: input
                .credits
                .map(|credits| check_credits(credits, 1, now))
                .transpose()?,
            secrets: Secrets {
                digest: minted.digest,
                grace_digest: None,
                grace_until: None,
                version: 1,
            },
            version: 0,
        };
        Ok(KeyChange {
            record,
            minted: Some(minted),
            retired: Vec::new(),
        })
    }

    pub fn patch(
        &self,
        current: &KeyRecord,
        input: PatchKey,
        now: i64,
    ) -> Result<KeyChange, AdminError> {
        if current.revoked_at.is_some() {
            return Err(AdminError::AlreadyRevoked);
        }
        let mut record = current.clone();
        if let Some(name) = input.name {
            record.name = check_name(&name)?;
        }
        if let Some(permissions) = input.permissions {
            if record.key_type == KeyType::Legacy {
                return Err(AdminError::InvalidRequest(
                    "a legacy key takes its permissions from its role".into(),
                ));
            }
            record.permissions = self.check_permissions(permissions)?;
        }
        if let Some(list) = input.ip_allowlist {
            record.ip_allowlist = check_allowlist(list)?;
        }
        if let Some(flag) = input.allow_infrastructure_ips {
            record.allow_infrastructure_ips = flag;
        }
        if let Some(value) = input.rate_limit {
            record.rate_limit = match value {
                Value::Null => None,
                other => {
                    let parsed: RateLimitOverride = serde_json::from_value(other)
                        .map_err(|e| AdminError::InvalidRequest(format!("rate_limit: {e}")))?;
                    check_rate_limit(Some(parsed))?
                }
            };
        }
        if let Some(metadata) = input.metadata {
            record.metadata = check_metadata(Some(metadata))?;
        }
        if let Some(value) = input.client_cert_sha256 {
            record.client_cert_sha256 = match value {
                Value::Null => None,
                Value::String(text) => Some(check_fingerprint(&text)?),
                _ => {
                    return Err(AdminError::InvalidRequest(
                        "client_cert_sha256 must be a string or null".into(),
                    ))
                }
            };
        }
        if let Some(value) = input.credits {
            record.credits = patched_credits(value, current.credits.as_ref(), now)?;
        }
        if let Some(value) = input.owner_id {
            record.owner_id = match value {
                Value::Null => None,
                Value::String(id) => Some(id),
                _ => {
                    return Err(AdminError::InvalidRequest(
                        "owner_id must be a string or null".into(),
                    ))
                }
            };
        }
        Ok(KeyChange {
            record,
            minted: None,
            retired: Vec::new(),
        })
    }

    /// A new secret. The old one stops at once, or at the end of `grace`.
    pub fn rotate(
        &self,
        current: &KeyRecord,
        input: RotateKey,
        policy: &Policy,
        now: i64,
    ) -> Result<KeyChange, AdminError> {
        if current.revoked_at.is_some() {
            return Err(AdminError::AlreadyRevoked);
        }
        let expires_at = match (input.expires_at.as_deref(), policy.max_key_lifetime) {
            (None, None) => current.expires_at.map(|t| t.0),
            (given, _) => check_expiry(given, policy, now)?,
        };
        let grace_until = match input.grace.as_deref() {
            None => None,
            Some(text) => {
                let grace = parse_duration(text)
                    .map_err(|e| AdminError::InvalidRequest(format!("grace: {e}")))?;
                if grace > MAX_GRACE {
                    return Err(AdminError::InvalidRequest(format!(
                        "grace may be at most {}",
                        format_duration(MAX_GRACE)
                    )));
                }
                let until = now + grace.as_millis() as i64;
                if current.expires_at.is_some_and(|expires| until > expires.0) {
                    return Err(AdminError::InvalidRequest(
                        "grace would keep the old secret working past its expiry".into(),
                    ));
                }
                Some(until)
            }
        };
        let ip_allowlist = match input.ip_allowlist {
            Some(list) => check_allowlist(list)?,
            None => current.ip_allowlist.clone(),
        };
        let environment = Environment::parse(&current.environment).unwrap_or(self.environment);
        let minted = api_key::mint(&self.key_prefix, environment);
        let mut retired: Vec<Digest> = current.secrets.grace_digest.into_iter().collect();
        if grace_until.is_none() {
            retired.push(current.secrets.digest);
        }
        let mut record = current.clone();
        record.start = minted.start.clone();
        record.expires_at = expires_at.map(Timestamp);
        record.ip_allowlist = ip_allowlist;
        record.rotated_at = Some(Timestamp(now));
        record.secrets = Secrets {
            digest: minted.digest,
            grace_digest: grace_until.map(|_| current.secrets.digest),
            grace_until,
            version: current.secrets.version + 1,
        };
        Ok(KeyChange {
            record,
            minted: Some(minted),
            retired,
        })
    }

    pub fn revoke(&self, current: &KeyRecord, now: i64) -> Result<KeyChange, AdminError> {
        if current.revoked_at.is_some() {
            return Err(AdminError::AlreadyRevoked);
        }
        let mut record = current.clone();
        record.revoked_at = Some(Timestamp(now));
        Ok(KeyChange {
            record,
            minted: None,
            retired: Vec::new(),
        })
    }

    /// Known, de-duplicated, in the order given; at least one.
    fn check_permissions(&self, wanted: Vec<String>) -> Result<Vec<String>, AdminError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for permission in wanted {
            if !self.catalog.contains(&permission) {
                return Err(AdminError::UnknownPermission(permission));
            }
            if seen.insert(permission.clone()) {
                out.push(permission);
            }
        }
        if out.is_empty() {
            return Err(AdminError::PermissionRequired);
        }
        Ok(out)
    }
}

pub(super) fn check_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(AdminError::InvalidRequest(format!(
            "name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(name.to_string())
}

/// With `max_key_lifetime` set, an expiry is required and must lie within it. An expiry
/// is always in the future.
pub fn check_expiry(
    expires_at: Option<&str>,
    policy: &Policy,
    now: i64,
) -> Result<Option<i64>, AdminError> {
    let limit = policy.max_key_lifetime.map(|d| (d, format_duration(d)));
    let Some(text) = expires_at else {
        return match limit {
            Some((_, shown)) => Err(AdminError::ExpiryRequired(shown)),
            None => Ok(None),
        };
    };
    let at = crate::clock::parse_rfc3339(text).ok_or_else(|| {
        AdminError::InvalidRequest(format!("expires_at \"{text}\" is not an RFC 3339 time"))
    })?;
    if at <= now {
        return Err(AdminError::InvalidRequest(
            "expires_at must be in the future".into(),
        ));
    }
    if let Some((lifetime, shown)) = limit {
        if at - now > lifetime.as_millis() as i64 {
            return Err(AdminError::ExpiryBeyondMaxLifetime(shown));
        }
    }
    Ok(Some(at))
}

/// Parses each entry; stores it in canonical CIDR form. A CIDR with host bits set is refused
/// (`10.0.0.1/8`: the address or the network?), never silently widened.
fn check_allowlist(list: Vec<String>) -> Result<Vec<String>, AdminError> {
    if list.len() > 1000 {
        return Err(AdminError::InvalidRequest(
            "ip_allowlist may hold at most 1000 entries".into(),
        ));
    }
    list.into_iter()
        .map(|entry| {
            parse_cidr_exact(&entry)
                .map(|net| net.to_string())
                .map_err(|error| AdminError::InvalidCidr(error.describe(&entry)))
        })
        .collect()
}

pub(super) fn check_rate_limit(
    limit: Option<RateLimitOverride>,
) -> Result<Option<RateLimitOverride>, AdminError> {
    match limit {
        Some(limit) if limit.per_minute == 0 || limit.per_day == 0 => {
            Err(AdminError::InvalidRequest(
                "rate_limit per_minute and per_day must be at least 1".into(),
            ))
        }
        other => Ok(other),
    }
}

/// A client certificate's SHA-256: 64 hex digits, with or without colons (as `openssl x509
/// -fingerprint -sha256` prints it), kept lowercase without colons.
pub fn check_fingerprint(text: &str) -> Result<String, AdminError> {
    let hex: String = if text.contains(':') {
        let pairs: Vec<&str> = text.split(':').collect();
        match pairs.len() == 32 && pairs.iter().all(|pair| pair.len() == 2) {
            true => pairs.concat(),
            false => String::new(),
        }
    } else {
        text.to_string()
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminError::InvalidRequest(
            "client_cert_sha256 must be the certificate's SHA-256 fingerprint: 64 hex digits"
                .into(),
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

pub(super) fn check_metadata(metadata: Option<Map<String, Value>>) -> Result<Value, AdminError> {
    let metadata = Value::Object(metadata.unwrap_or_default());
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(AdminError::InvalidRequest(format!(
            "metadata may be at most {MAX_METADATA_BYTES} bytes of JSON"
        )));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn rules() -> KeyRules {
        let config = Config::parse(
            "permissions: [accounts:read, accounts:write]\npresets:\n  ro: [accounts:read]\nroles:\n  workbench: [accounts:read]\n",
        )
        .unwrap();
        KeyRules::new(&config)
    }

    fn open() -> Policy {
        Policy {
            block_legacy_keys: false,
            max_key_lifetime: None,
        }
    }

    fn input(json: Value) -> CreateKey {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn presets_and_permissions_merge_and_must_exist() {
        let rules = rules();
        let made = rules
            .create(input(serde_json::json!({"name": "a", "preset": "ro", "permissions": ["accounts:write", "accounts:read"]})), &open(), 0)
            .unwrap();
        assert_eq!(made.record.permissions, ["accounts:read", "accounts:write"]);
        assert!(made.minted.unwrap().secret.starts_with("tg_live_"));
        assert!(matches!(
            rules.create(
                input(serde_json::json!({"name": "a", "permissions": []})),
                &open(),
                0
            ),
            Err(AdminError::PermissionRequired)
        ));
        assert!(matches!(
            rules.create(input(serde_json::json!({"name": "a", "permissions": ["acounts:read"]})), &open(), 0),
            Err(AdminError::UnknownPermission(p)) if p == "acounts:read"
        ));
    }

    #[test]
    fn the_policy_bounds_expiry_on_create() {
        let rules = rules();
        let policy = Policy {
            block_legacy_keys: true,
            max_key_lifetime: Some(Duration::from_secs(90 * 86_400)),
        };
        let now = crate::clock::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let base = serde_json::json!({"name": "a", "permissions": ["accounts:read"]});
        assert!(matches!(
            rules.create(input(base.clone()), &policy, now),
            Err(AdminError::ExpiryRequired(_))
        ));
        let mut far = base.clone();
        far["expires_at"] = "2026-05-01T00:00:00Z".into();
        assert!(matches!(
            rules.create(input(far), &policy, now),
            Err(AdminError::ExpiryBeyondMaxLifetime(_))
        ));
        let mut edge = base.clone();
        edge["expires_at"] = "2026-04-01T00:00:00Z".into();
        assert!(
            rules.create(input(edge), &policy, now).is_ok(),
            "exactly 90 days is within the limit"
        );
        let legacy = serde_json::json!({"name": "a", "type": "legacy", "role": "workbench", "expires_at": "2026-02-01T00:00:00Z"});
        assert!(matches!(
            rules.create(input(legacy), &policy, now),
            Err(AdminError::LegacyKeysBlocked)
        ));
    }

    #[test]
    fn allowlists_are_validated_and_canonical() {
        let rules = rules();
        let made = rules
            .create(input(serde_json::json!({"name": "a", "permissions": ["accounts:read"], "ip_allowlist": ["203.0.113.42", "198.51.100.0/24", "::ffff:192.0.2.1"]})), &open(), 0)
            .unwrap();
        assert_eq!(
            made.record.ip_allowlist,
            ["203.0.113.42/32", "198.51.100.0/24", "192.0.2.1/32"]
        );
        // Host bits set: refused with both readings, never widened to the network.
        match rules.create(input(serde_json::json!({"name": "a", "permissions": ["accounts:read"], "ip_allowlist": ["10.0.0.1/8"]})), &open(), 0) {
            Err(AdminError::InvalidCidr(message)) => assert!(
                message.contains("10.0.0.1/32") && message.contains("10.0.0.0/8"),
                "{message}"
            ),
            other => panic!("{:?}", other.map(|c| c.record.ip_allowlist)),
        }
        assert!(matches!(
            rules.create(input(serde_json::json!({"name": "a", "permissions": ["accounts:read"], "ip_allowlist": ["10.0.0.0/99"]})), &open(), 0),
            Err(AdminError::InvalidCidr(_))
        ));
    }

    #[test]
    fn rotation_retires_the_old_secret_now_or_after_grace() {
        let rules = rules();
        let key = rules
            .create(
                input(serde_json::json!({"name": "a", "permissions": ["accounts:read"]})),
                &open(),
                0,
            )
            .unwrap()
            .record;
        let now_rotation = rules
            .rotate(&key, RotateKey::default(), &open(), DAY)
            .unwrap();
        assert_eq!(now_rotation.retired, [key.secrets.digest]);
        assert_eq!(now_rotation.record.secrets.version, 2);
        assert_ne!(now_rotation.record.secrets.digest, key.secrets.digest);

        let graceful = RotateKey {
            grace: Some("1h".into()),
            ..RotateKey::default()
        };
        let with_grace = rules.rotate(&key, graceful, &open(), DAY).unwrap();
        assert!(with_grace.retired.is_empty());
        assert_eq!(
            with_grace.record.secrets.grace_digest,
            Some(key.secrets.digest)
        );
        assert_eq!(with_grace.record.secrets.grace_until, Some(DAY + 3_600_000));
        // Rotating again retires both the graced secret and the current one.
        let again = rules
            .rotate(&with_grace.record, RotateKey::default(), &open(), DAY + 1)
            .unwrap();
        assert_eq!(again.retired.len(), 2);

        let too_long = RotateKey {
            grace: Some("30d".into()),
            ..RotateKey::default()
        };
        assert!(matches!(
            rules.rotate(&key, too_long, &open(), DAY),
            Err(AdminError::InvalidRequest(_))
        ));
    }

    #[test]
    fn revocation_is_final_and_expiry_immutable() {
        let rules = rules();
        let key = rules
            .create(
                input(serde_json::json!({"name": "a", "permissions": ["accounts:read"]})),
                &open(),
                0,
            )
            .unwrap()
            .record;
        let revoked = rules.revoke(&key, 5).unwrap().record;
        assert!(matches!(
            rules.revoke(&revoked, 6),
            Err(AdminError::AlreadyRevoked)
        ));
        assert!(matches!(
            rules.rotate(&revoked, RotateKey::default(), &open(), 6),
            Err(AdminError::AlreadyRevoked)
        ));
        assert!(matches!(
            parse_patch(br#"{"expires_at": null}"#),
            Err(AdminError::ExpiryImmutable)
        ));
        // The list of accepted fields never offers expires_at.
        let unknown = parse_patch(br#"{"nmae": "x"}"#).unwrap_err().to_string();
        assert!(
            unknown.contains("`nmae`") && !unknown.contains("expires_at"),
            "{unknown}"
        );
        // Type errors and nulls name their field.
        let typed = parse_patch(br#"{"allow_infrastructure_ips": "yes"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            typed.contains("allow_infrastructure_ips: invalid type"),
            "{typed}"
        );
        let null = parse_patch(br#"{"name": null}"#).unwrap_err().to_string();
        assert!(null.contains("name: invalid type: null"), "{null}");
        assert!(
            parse_patch(br#"{"rate_limit": null}"#).is_ok(),
            "null clears the override"
        );
    }

    #[test]
    fn server_set_fields_cannot_be_written() {
        for field in [
            "id",
            "created_at",
            "start",
            "digest",
            "client_id",
            "revoked_at",
        ] {
            let mut body = serde_json::json!({"name": "a", "permissions": ["accounts:read"]});
            body[field] = "x".into();
            let error = serde_json::from_value::<CreateKey>(body)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("unknown field `{field}`")),
                "{error}"
            );
        }
    }
}
