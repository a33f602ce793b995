//! Key and policy rows: reads, and versioned writes with their audit entries.

use super::admin_tables::audit;
use super::records::{
    client_cert_binding, credits_columns, credits_from_columns, Actor, KeyRecord, KeyRow,
    KeyStatus, KeyType, Policy, Secrets, StoredList, Timestamp,
};
use super::statement::{to_json, Args};
use super::{Store, StoreError, StoreResult};
use crate::auth::api_key::Digest;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::borrow::Cow;
use std::time::Duration;

pub(super) const KEY_COLUMNS: &str =
    "id, client_id, name, key_type, permissions, role, environment, start, \
    digest, grace_digest, grace_until, secret_version, ip_allowlist, allow_infrastructure_ips, \
    expires_at, created_at, rotated_at, revoked_at, last_used_at, rate_limit, metadata, version, \
    client_cert_sha256, owner_id, credits_remaining, credits_refill, credits_period, \
    credits_generation";

/// Which keys a listing shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyFilter<'a> {
    pub status: Option<KeyStatus>,
    pub key_type: Option<KeyType>,
    /// Keys whose name holds this, ignoring case.
    pub name: Option<&'a str>,
    /// The time statuses are judged at.
    pub now: i64,
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A stored allowlist. One that cannot be read comes back as an entry that names the
/// damage: it is no address, so the key allows none (and the admin API shows why).
pub fn stored_allowlist(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|_| vec![format!("unreadable: {text}")])
}

fn bad_digest() -> StoreError {
    StoreError::Unavailable("a stored digest is not 32 bytes".into())
}

pub(super) fn digest_of(bytes: Vec<u8>) -> StoreResult<Digest> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| bad_digest())?;
    Ok(Digest(array))
}

pub(super) fn key_from_row(row: &AnyRow) -> StoreResult<KeyRecord> {
    let key_type: String = row.try_get("key_type")?;
    let grace_digest: Option<Vec<u8>> = row.try_get("grace_digest")?;
    let rate_limit: Option<String> = row.try_get("rate_limit")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        key_type: KeyType::parse(&key_type).unwrap_or(KeyType::FineGrained),
        permissions: json_list(&row.try_get::<String, _>("permissions")?),
        role: row.try_get("role")?,
        environment: row.try_get("environment")?,
        start: row.try_get("start")?,
        ip_allowlist: stored_allowlist(&row.try_get::<String, _>("ip_allowlist")?),
        allow_infrastructure_ips: row.try_get::<i64, _>("allow_infrastructure_ips")? != 0,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        created_at: Timestamp(row.try_get("created_at")?),
        rotated_at: row.try_get::<Option<i64>, _>("rotated_at")?.map(Timestamp),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
        rate_limit: rate_limit
            .and_then(|text| serde_json::from_str::<super::records::RateLimitOverride>(&text).ok()),
        metadata: serde_json::from_str(&metadata).unwrap_or_else(|_| serde_json::json!({})),
        secrets: Secrets {
            digest: digest_of(row.try_get("digest")?)?,
            grace_digest: grace_digest.map(digest_of).transpose()?,
            grace_until: row.try_get("grace_until")?,
            version: row.try_get("secret_version")?,
        },
        version: row.try_get("version")?,
        client_cert_sha256: row.try_get("client_cert_sha256")?,
        owner_id: row.try_get("owner_id")?,
        credits: credits_from_columns(
            row.try_get("credits_remaining")?,
            row.try_get::<Option<String>, _>("credits_refill")?
                .as_deref(),
            row.try_get("credits_period")?,
            row.try_get("credits_generation")?,
        ),
    })
}

/// One page of keys for a full load: the JSON text the database aggregated
/// ([`Dialect::key_page_sql`](super::Dialect::key_page_sql)).
pub struct KeyPage(pub(super) Option<String>);

/// One key of a page, in column order, borrowed from the page's text.
#[derive(serde::Deserialize)]
struct PageRow<'a>(
    #[serde(borrow)] Cow<'a, str>,         // id
    #[serde(borrow)] Cow<'a, str>,         // client_id
    #[serde(borrow)] Cow<'a, str>,         // key_type
    #[serde(borrow)] Cow<'a, str>,         // permissions, JSON text
    #[serde(borrow)] Option<Cow<'a, str>>, // role
    #[serde(borrow)] Cow<'a, str>,         // environment
    #[serde(borrow)] Cow<'a, str>,         // digest, hex
    #[serde(borrow)] Option<Cow<'a, str>>, // grace_digest, hex (SQLite: empty if none)
    Option<i64>,                           // grace_until
    i64,                                   // secret_version
    #[serde(borrow)] Cow<'a, str>,         // ip_allowlist, JSON text
    i64,                                   // allow_infrastructure_ips
    Option<i64>,                           // expires_at
    Option<i64>,                           // revoked_at
    #[serde(borrow)] Option<Cow<'a, str>>, // rate_limit, JSON text
    i64,                                   // version
    Option<i64>,                           // rotated_at
    #[serde(borrow)] Option<Cow<'a, str>>, // client_cert_sha256, hex
    #[serde(borrow)] Option<Cow<'a, str>>, // owner_id
    Option<i64>,                           // credits_remaining
    #[serde(borrow)] Option<Cow<'a, str>>, // credits_refill, JSON text
    Option<i64>,                           // credits_period
    Option<i64>,                           // credits_generation
);

fn hex_digest(text: &str) -> StoreResult<Digest> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).map_err(|_| bad_digest())?;
    Ok(Digest(digest))
}

impl KeyPage {
    /// The page's keys in `(version, id)` order.
    pub fn rows(&self) -> StoreResult<Vec<KeyRow<'_>>> {
        let Some(text) = &self.0 else {
            return Ok(Vec::new());
        };
        let rows: Vec<PageRow<'_>> = serde_json::from_str(text).map_err(|error| {
            StoreError::Unavailable(format!("a page of keys is unreadable: {error}"))
        })?;
        let mut rows = rows
            .into_iter()
            .map(PageRow::into_key)
            .collect::<StoreResult<Vec<_>>>()?;
        rows.sort_unstable_by(|a, b| (a.version, &a.id).cmp(&(b.version, &b.id)));
        Ok(rows)
    }
}

impl<'a> PageRow<'a> {
    fn into_key(self) -> StoreResult<KeyRow<'a>> {
        let PageRow(
            id,
            client_id,
            key_type,
            permissions,
            role,
            environment,
            digest,
            grace_digest,
            grace_until,
            secret_version,
            ip_allowlist,
            allow_infrastructure_ips,
            expires_at,
            revoked_at,
            rate_limit,
            version,
            rotated_at,
            client_cert_sha256,
            owner_id,
            credits_remaining,
            credits_refill,
            credits_period,
            credits_generation,
        ) = self;
        let grace_digest = grace_digest.filter(|hex| !hex.is_empty());
        Ok(KeyRow {
            id,
            client_id,
            key_type: KeyType::parse(&key_type).unwrap_or(KeyType::FineGrained),
            permissions: StoredList::Text(permissions),
            role,
            environment,
            secrets: Secrets {
                digest: hex_digest(&digest)?,
                grace_digest: grace_digest.as_deref().map(hex_digest).transpose()?,
                grace_until,
                version: secret_version,
            },
            ip_allowlist: StoredList::Text(ip_allowlist),
            allow_infrastructure_ips: allow_infrastructure_ips != 0,
            expires_at,
            revoked: revoked_at.is_some(),
            rotated_at,
            rate_limit: rate_limit.and_then(|text| serde_json::from_str(&text).ok()),
            version,
            client_cert: client_cert_sha256.as_deref().map(client_cert_binding),
            owner_id,
            credits: credits_from_columns(
                credits_remaining,
                credits_refill.as_deref(),
                credits_period,
                credits_generation,
            ),
        })
    }
}

impl Store {
    pub async fn get_key(&self, id: &str) -> StoreResult<KeyRecord> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        key_from_row(&row)
    }

    /// The key whose current secret has this digest, if any.
    pub async fn key_by_digest(&self, digest: &Digest) -> StoreResult<Option<KeyRecord>> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE digest = $1"))
            .bind(digest.0.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Keys newest first, after the `(created_at, id)` of the cursor, with the status and
    /// type `filter` asks for.
    pub async fn list_keys(
        &self,
        filter: KeyFilter<'_>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<KeyRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let mut args = Args::default();
        let (c, i) = (args.int(created), args.text(id));
        let mut clauses = vec![format!(
            "(created_at < {c} OR (created_at = {c} AND id < {i}))"
        )];
        let soon = filter.now.saturating_add(KeyStatus::EXPIRING_WITHIN_MS);
        clauses.push(match filter.status {
            None => "TRUE".into(),
            Some(KeyStatus::Revoked) => "revoked_at IS NOT NULL".into(),
            Some(KeyStatus::Expired) => format!(
                "revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= {}",
                args.int(filter.now)
            ),
            Some(KeyStatus::Expiring) => format!(
                "revoked_at IS NULL AND expires_at > {} AND expires_at <= {}",
                args.int(filter.now),
                args.int(soon)
            ),
            Some(KeyStatus::Active) => format!(
                "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {})",
                args.int(soon)
            ),
        });
        if let Some(name) = filter.name {
            // LIKE on both stores, with its wildcards in the search escaped.
            let escaped: String = name
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            clauses.push(format!(
                "LOWER(name) LIKE {} ESCAPE '\\'",
                args.text(format!("%{escaped}%"))
            ));
        }
        if let Some(key_type) = filter.key_type {
            clauses.push(format!(
                "key_type = {}",
                args.text(key_type.as_str().into())
            ));
        }
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE {} ORDER BY created_at DESC, id DESC LIMIT {}",
            clauses.join(" AND "),
            args.int(limit)
        );
        let rows = args.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Inserts a new key and its audit entry in one transaction.
    pub async fn insert_key(
        &self,
        record: &KeyRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<KeyRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut record = record.clone();
        record.version = version;
        let credits = credits_columns(record.credits.as_ref());
        sqlx::query(&format!(
            "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
        ))
        .bind(record.id.clone())
        .bind(record.client_id.clone())
        .bind(record.name.clone())
        .bind(record.key_type.as_str())
        .bind(to_json(&record.permissions))
        .bind(record.role.clone())
        .bind(record.environment.clone())
        .bind(record.start.clone())
        .bind(record.secrets.digest.0.to_vec())
        .bind(record.secrets.grace_digest.map(|d| d.0.to_vec()))
        .bind(record.secrets.grace_until)
        .bind(record.secrets.version)
        .bind(to_json(&record.ip_allowlist))
        .bind(i64::from(record.allow_infrastructure_ips))
        .bind(record.expires_at.map(|t| t.0))
        .bind(record.created_at.0)
        .bind(record.rotated_at.map(|t| t.0))
        .bind(record.revoked_at.map(|t| t.0))
        .bind(record.last_used_at.map(|t| t.0))
        .bind(record.rate_limit.map(|r| to_json(&r)))
        .bind(to_json(&record.metadata))
        .bind(version)
        .bind(record.client_cert_sha256.clone())
        .bind(record.owner_id.clone())
        .bind(credits.0)
        .bind(credits.1)
        .bind(credits.2)
        .bind(credits.3)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "key.create",
            &record.id,
            None,
            Some(to_json(&record)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(record)
    }

    /// Imports many keys in one transaction under one version, without audit entries:
    /// for seeding benchmarks and migrating from another system, not for the admin API.
    pub async fn import_keys(&self, records: &[KeyRecord], now: i64) -> StoreResult<i64> {
        let (mut tx, version) = self.begin_write(now).await?;
        for record in records {
            let credits = credits_columns(record.credits.as_ref());
            sqlx::query(&format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                 $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
            ))
            .bind(record.id.clone())
            .bind(record.client_id.clone())
            .bind(record.name.clone())
            .bind(record.key_type.as_str())
            .bind(to_json(&record.permissions))
            .bind(record.role.clone())
            .bind(record.environment.clone())
            .bind(record.start.clone())
            .bind(record.secrets.digest.0.to_vec())
            .bind(Option::<Vec<u8>>::None)
            .bind(Option::<i64>::None)
            .bind(record.secrets.version)
            .bind(to_json(&record.ip_allowlist))
            .bind(i64::from(record.allow_infrastructure_ips))
            .bind(record.expires_at.map(|t| t.0))
            .bind(record.created_at.0)
            .bind(Option::<i64>::None)
            .bind(Option::<i64>::None)
            .bind(Option::<i64>::None)
            .bind(record.rate_limit.map(|r| to_json(&r)))
            .bind(to_json(&record.metadata))
            .bind(version)
            .bind(record.client_cert_sha256.clone())
            .bind(record.owner_id.clone())
            .bind(credits.0)
            .bind(credits.1)
            .bind(credits.2)
            .bind(credits.3)
            .execute(&mut *tx)
            .await?;
        }
        self.finish_write(tx, version).await?;
        Ok(version)
    }

    /// Replaces `before` with `after` if nobody changed it in between ([`StoreError::Conflict`]
    /// otherwise). `retired` digests answer `key_revoked` from now on.
    pub async fn replace_key(
        &self,
        before: &KeyRecord,
        after: &KeyRecord,
        action: &str,
        actor: &Actor,
        retired: &[Digest],
        now: i64,
    ) -> StoreResult<KeyRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let current: Option<i64> = sqlx::query("SELECT version FROM keys WHERE id = $1")
            .bind(before.id.clone())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        match current {
            None => return Err(StoreError::NotFound),
            Some(current) if current != before.version => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        let mut after = after.clone();
        // The balance of an unchanged generation is the data plane's, written back without
        // a new `version` (see `save_balances`): it stays as the store has it, however old
        // `before` is. An operator's change of credits always moves the generation on.
        let credits = credits_columns(after.credits.as_ref());
        after.version = version;
        sqlx::query(
            "UPDATE keys SET name = $1, permissions = $2, digest = $3, grace_digest = $4, \
             grace_until = $5, secret_version = $6, ip_allowlist = $7, allow_infrastructure_ips = $8, \
             expires_at = $9, rotated_at = $10, revoked_at = $11, rate_limit = $12, metadata = $13, \
             start = $14, version = $15, client_cert_sha256 = $16, owner_id = $17, \
             credits_remaining = CASE WHEN credits_generation = $21 THEN credits_remaining ELSE $18 END, \
             credits_refill = $19, \
             credits_period = CASE WHEN credits_generation = $21 THEN credits_period ELSE $20 END, \
             credits_generation = $21 WHERE id = $22",
        )
        .bind(after.name.clone())
        .bind(to_json(&after.permissions))
        .bind(after.secrets.digest.0.to_vec())
        .bind(after.secrets.grace_digest.map(|d| d.0.to_vec()))
        .bind(after.secrets.grace_until)
        .bind(after.secrets.version)
        .bind(to_json(&after.ip_allowlist))
        .bind(i64::from(after.allow_infrastructure_ips))
        .bind(after.expires_at.map(|t| t.0))
        .bind(after.rotated_at.map(|t| t.0))
        .bind(after.revoked_at.map(|t| t.0))
        .bind(after.rate_limit.map(|r| to_json(&r)))
        .bind(to_json(&after.metadata))
        .bind(after.start.clone())
        .bind(version)
        .bind(after.client_cert_sha256.clone())
        .bind(after.owner_id.clone())
        .bind(credits.0)
        .bind(credits.1)
        .bind(credits.2)
        .bind(credits.3)
        .bind(after.id.clone())
        .execute(&mut *tx)
        .await?;
        for digest in retired {
            sqlx::query(
                "INSERT INTO retired_digests (digest, key_id, version) VALUES ($1, $2, $3)",
            )
            .bind(digest.0.to_vec())
            .bind(after.id.clone())
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        audit(
            &mut tx,
            now,
            actor,
            action,
            &after.id,
            Some(to_json(before)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(after)
    }

    /// The stored policy and its version, if one was ever written.
    pub async fn get_policy(&self) -> StoreResult<Option<(Policy, i64)>> {
        let row = sqlx::query(
            "SELECT block_legacy_keys, max_key_lifetime_ms, version FROM policy WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> StoreResult<(Policy, i64)> {
            Ok((policy_from_row(&row)?, row.try_get("version")?))
        })
        .transpose()
    }

    /// Writes the policy from the config when the store has none yet.
    pub async fn seed_policy(&self, policy: Policy, now: i64) -> StoreResult<()> {
        if self.get_policy().await?.is_some() {
            return Ok(());
        }
        let (mut tx, version) = self.begin_write(now).await?;
        let inserted = sqlx::query(
            "INSERT INTO policy (id, block_legacy_keys, max_key_lifetime_ms, version) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(i64::from(policy.block_legacy_keys))
        .bind(lifetime_ms(&policy))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            audit(
                &mut tx,
                now,
                &Actor::system("config"),
                "policy.seed",
                "policy",
                None,
                Some(to_json(&policy)),
            )
            .await?;
        }
        self.finish_write(tx, version).await?;
        Ok(())
    }

    /// Replaces the policy if it is still at `before_version`.
    pub async fn replace_policy(
        &self,
        before: (Policy, i64),
        after: Policy,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<i64> {
        let (mut tx, version) = self.begin_write(now).await?;
        let updated = sqlx::query(
            "UPDATE policy SET block_legacy_keys = $1, max_key_lifetime_ms = $2, version = $3 \
             WHERE id = 1 AND version = $4",
        )
        .bind(i64::from(after.block_legacy_keys))
        .bind(lifetime_ms(&after))
        .bind(version)
        .bind(before.1)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        audit(
            &mut tx,
            now,
            actor,
            "policy.update",
            "policy",
            Some(to_json(&before.0)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(version)
    }
}

fn lifetime_ms(policy: &Policy) -> Option<i64> {
    policy.max_key_lifetime.map(|d| d.as_millis() as i64)
}

pub(super) fn policy_from_row(row: &AnyRow) -> StoreResult<Policy> {
    let lifetime: Option<i64> = row.try_get("max_key_lifetime_ms")?;
    Ok(Policy {
        block_legacy_keys: row.try_get::<i64, _>("block_legacy_keys")? != 0,
        max_key_lifetime: lifetime.map(|ms| Duration::from_millis(ms.max(0) as u64)),
    })
}
