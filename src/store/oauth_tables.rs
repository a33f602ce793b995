//! Rows of the authorization server: apps, users, single-use codes, rotating refresh
//! tokens, and revoked grants.

use super::admin_tables::audit;
use super::records::{Actor, ClientRecord, ClientType, Grant, Timestamp, UserRecord};
use super::statement::to_json;
use super::{Store, StoreError, StoreResult};
use crate::auth::api_key::Digest;
use sqlx::any::AnyRow;
use sqlx::Row;

const CLIENT_COLUMNS: &str =
    "client_id, name, client_type, secret_digest, redirect_uris, scopes, created_at, deleted_at, version";
const USER_COLUMNS: &str =
    "id, username, password_hash, disabled, created_at, password_changed_at, version";

/// What redeeming a single-use code or refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// Unknown (or never issued).
    Unknown,
    /// First use: here is what it grants.
    Fresh(Grant),
    /// Already used: a replay. The grant is returned so its family can be revoked.
    Replayed(Grant),
}

fn digest_of(bytes: Option<Vec<u8>>) -> Option<Digest> {
    bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).map(Digest)
}

pub(super) fn client_from_row(row: &AnyRow) -> StoreResult<ClientRecord> {
    let client_type: String = row.try_get("client_type")?;
    Ok(ClientRecord {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        client_type: if client_type == "public" {
            ClientType::Public
        } else {
            ClientType::Confidential
        },
        redirect_uris: serde_json::from_str(&row.try_get::<String, _>("redirect_uris")?)
            .unwrap_or_default(),
        scopes: serde_json::from_str(&row.try_get::<String, _>("scopes")?).unwrap_or_default(),
        created_at: Timestamp(row.try_get("created_at")?),
        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(Timestamp),
        secret_digest: digest_of(row.try_get("secret_digest")?),
        version: row.try_get("version")?,
    })
}

pub(super) fn user_from_row(row: &AnyRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
        password_changed_at: row
            .try_get::<Option<i64>, _>("password_changed_at")?
            .map(Timestamp),
        version: row.try_get("version")?,
    })
}

fn grant_from_row(row: &AnyRow, with_code: bool) -> StoreResult<Grant> {
    Ok(Grant {
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        scope: row.try_get("scope")?,
        expires_at: row.try_get("expires_at")?,
        redirect_uri: if with_code {
            row.try_get("redirect_uri")?
        } else {
            String::new()
        },
        code_challenge: if with_code {
            row.try_get("code_challenge")?
        } else {
            String::new()
        },
    })
}

impl Store {
    pub async fn insert_client(
        &self,
        client: &ClientRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ClientRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut client = client.clone();
        client.version = version;
        sqlx::query(&format!(
            "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(client.client_id.clone())
        .bind(client.name.clone())
        .bind(client.client_type.as_str())
        .bind(client.secret_digest.map(|d| d.0.to_vec()))
        .bind(to_json(&client.redirect_uris))
        .bind(to_json(&client.scopes))
        .bind(client.created_at.0)
        .bind(client.deleted_at.map(|t| t.0))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "client.create",
            &client.client_id,
            None,
            Some(to_json(&client)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(client)
    }

    pub async fn get_client(&self, client_id: &str) -> StoreResult<ClientRecord> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1"
        ))
        .bind(client_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        client_from_row(&row)
    }

    /// Apps newest first, after the `(created_at, client_id)` of the cursor.
    pub async fn list_clients(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<ClientRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients \
             WHERE created_at < $1 OR (created_at = $1 AND client_id < $2) \
             ORDER BY created_at DESC, client_id DESC LIMIT $3"
        ))
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Marks an app deleted; its tokens stop working once replicas sync.
    pub async fn delete_client(
        &self,
        before: &ClientRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ClientRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let updated = sqlx::query(
            "UPDATE oauth_clients SET deleted_at = $1, version = $2 WHERE client_id = $3 AND version = $4",
        )
        .bind(now)
        .bind(version)
        .bind(before.client_id.clone())
        .bind(before.version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        let mut after = before.clone();
        after.deleted_at = Some(Timestamp(now));
        after.version = version;
        audit(
            &mut tx,
            now,
            actor,
            "client.delete",
            &after.client_id,
            Some(to_json(before)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(after)
    }

    pub async fn insert_user(
        &self,
        user: &UserRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<UserRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut user = user.clone();
        user.version = version;
        sqlx::query(&format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(user.id.clone())
        .bind(user.username.clone())
        .bind(user.password_hash.clone())
        .bind(i64::from(user.disabled))
        .bind(user.created_at.0)
        .bind(user.password_changed_at.map(|t| t.0))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "user.create",
            &user.id,
            None,
            Some(to_json(&user)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(user)
    }

    pub async fn get_user(&self, id: &str) -> StoreResult<UserRecord> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    pub async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Users newest first, after the `(created_at, id)` of the cursor.
    pub async fn list_users(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<UserRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE created_at < $1 OR (created_at = $1 AND id < $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Writes a user's change. With `end_grants` (a disable, a new password), every grant
    /// issued to the user before now ends in the same transaction, for good: its access
    /// tokens, refresh tokens and unredeemed codes. The revocations are kept until
    /// `end_grants` (when the last of those tokens would have expired anyway).
    pub async fn replace_user(
        &self,
        before: &UserRecord,
        after: &UserRecord,
        end_grants: Option<i64>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<UserRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $1, disabled = $2, password_changed_at = $3, version = $4 \
             WHERE id = $5 AND version = $6",
        )
        .bind(after.password_hash.clone())
        .bind(i64::from(after.disabled))
        .bind(after.password_changed_at.map(|t| t.0))
        .bind(version)
        .bind(before.id.clone())
        .bind(before.version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        if let Some(forget_at) = end_grants {
            // `WHERE TRUE`: without it SQLite reads `ON CONFLICT` as a join constraint.
            sqlx::query(
                "INSERT INTO revoked_grants (grant_id, revoked_at, expires_at, version) \
                 SELECT DISTINCT grant_id, $1, $2, $3 FROM ( \
                   SELECT grant_id FROM refresh_tokens WHERE user_id = $4 \
                   UNION SELECT grant_id FROM auth_codes WHERE user_id = $4 \
                 ) AS granted WHERE TRUE ON CONFLICT (grant_id) DO NOTHING",
            )
            .bind(now)
            .bind(forget_at)
            .bind(version)
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        }
        let mut after = after.clone();
        after.version = version;
        audit(
            &mut tx,
            now,
            actor,
            "user.update",
            &after.id,
            Some(to_json(before)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(after)
    }

    pub async fn insert_code(&self, digest: Digest, grant: &Grant) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO auth_codes (code_digest, client_id, user_id, redirect_uri, scope, code_challenge, \
             grant_id, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(digest.0.to_vec())
        .bind(grant.client_id.clone())
        .bind(grant.user_id.clone())
        .bind(grant.redirect_uri.clone())
        .bind(grant.scope.clone())
        .bind(grant.code_challenge.clone())
        .bind(grant.grant_id.clone())
        .bind(grant.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a code once: the first caller gets `Fresh`, every later one `Replayed`.
    pub async fn redeem_code(&self, digest: Digest, now: i64) -> StoreResult<Redeemed> {
        let row = sqlx::query(
            "SELECT client_id, user_id, redirect_uri, scope, code_challenge, grant_id, expires_at \
             FROM auth_codes WHERE code_digest = $1",
        )
        .bind(digest.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Redeemed::Unknown);
        };
        let grant = grant_from_row(&row, true)?;
        let claimed = sqlx::query(
            "UPDATE auth_codes SET used_at = $1 WHERE code_digest = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(digest.0.to_vec())
        .execute(&self.pool)
        .await?;
        Ok(if claimed.rows_affected() == 1 {
            Redeemed::Fresh(grant)
        } else {
            Redeemed::Replayed(grant)
        })
    }

    pub async fn insert_refresh(&self, digest: Digest, grant: &Grant) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_digest, grant_id, client_id, user_id, scope, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(digest.0.to_vec())
        .bind(grant.grant_id.clone())
        .bind(grant.client_id.clone())
        .bind(grant.user_id.clone())
        .bind(grant.scope.clone())
        .bind(grant.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a refresh token once (they rotate on every use).
    pub async fn redeem_refresh(&self, digest: Digest, now: i64) -> StoreResult<Redeemed> {
        let row = sqlx::query(
            "SELECT grant_id, client_id, user_id, scope, expires_at FROM refresh_tokens WHERE token_digest = $1",
        )
        .bind(digest.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Redeemed::Unknown);
        };
        let grant = grant_from_row(&row, false)?;
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_digest = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(digest.0.to_vec())
        .execute(&self.pool)
        .await?;
        Ok(if claimed.rows_affected() == 1 {
            Redeemed::Fresh(grant)
        } else {
            Redeemed::Replayed(grant)
        })
    }

    /// Looks a refresh token up without using it (introspection, revocation).
    pub async fn peek_refresh(&self, digest: Digest) -> StoreResult<Option<(Grant, bool)>> {
        let row = sqlx::query(
            "SELECT grant_id, client_id, user_id, scope, expires_at, used_at FROM refresh_tokens WHERE token_digest = $1",
        )
        .bind(digest.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok((
                grant_from_row(&row, false)?,
                row.try_get::<Option<i64>, _>("used_at")?.is_some(),
            ))
        })
        .transpose()
    }

    /// Revokes every token of a grant: its access tokens (through the snapshot) and its
    /// refresh tokens. `expires_at` is when the revocation can be forgotten.
    pub async fn revoke_grant(&self, grant_id: &str, expires_at: i64, now: i64) -> StoreResult<()> {
        let (mut tx, version) = self.begin_write(now).await?;
        sqlx::query(
            "INSERT INTO revoked_grants (grant_id, revoked_at, expires_at, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (grant_id) DO NOTHING",
        )
        .bind(grant_id.to_string())
        .bind(now)
        .bind(expires_at)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE grant_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(grant_id.to_string())
        .execute(&mut *tx)
        .await?;
        self.finish_write(tx, version).await?;
        Ok(())
    }

    pub async fn grant_revoked(&self, grant_id: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT grant_id FROM revoked_grants WHERE grant_id = $1")
            .bind(grant_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
