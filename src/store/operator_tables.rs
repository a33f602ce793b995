//! Rows of the workbench: operators, admin tokens, console sessions and failed sign-ins,
//! with their audit entries. Admin tokens and sessions are read on every admin request
//! from the store itself, so a revocation or a sign-out holds on every replica at once.

use super::admin_tables::audit;
use super::records::{Actor, AdminTokenRecord, OperatorRecord, SessionRecord, Timestamp};
use super::statement::to_json;
use super::{Store, StoreError, StoreResult};
use crate::auth::api_key::Digest;
use sqlx::any::AnyRow;
use sqlx::Row;

const OPERATOR_COLUMNS: &str =
    "id, email, name, password_hash, role, disabled, created_at, password_changed_at, version";
const TOKEN_COLUMNS: &str = "id, name, digest, start, permissions, role, expires_at, created_at, \
    created_by, revoked_at, last_used_at, version";

/// How emails are compared: case-insensitively.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

fn digest_of(bytes: Vec<u8>) -> StoreResult<Digest> {
    <[u8; 32]>::try_from(bytes)
        .map(Digest)
        .map_err(|_| StoreError::Unavailable("a stored digest is not 32 bytes".into()))
}

fn operator_from_row(row: &AnyRow) -> StoreResult<OperatorRecord> {
    Ok(OperatorRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
        password_changed_at: row
            .try_get::<Option<i64>, _>("password_changed_at")?
            .map(Timestamp),
        password_hash: row.try_get("password_hash")?,
        version: row.try_get("version")?,
    })
}

fn token_from_row(row: &AnyRow) -> StoreResult<AdminTokenRecord> {
    let stamp = |name: &str| -> StoreResult<Option<Timestamp>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(Timestamp))
    };
    Ok(AdminTokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        start: row.try_get("start")?,
        permissions: serde_json::from_str(&row.try_get::<String, _>("permissions")?)
            .unwrap_or_default(),
        role: row.try_get("role")?,
        expires_at: stamp("expires_at")?,
        created_at: Timestamp(row.try_get("created_at")?),
        created_by: Actor::from_stored(&row.try_get::<String, _>("created_by")?),
        revoked_at: stamp("revoked_at")?,
        last_used_at: stamp("last_used_at")?,
        digest: digest_of(row.try_get("digest")?)?,
        version: row.try_get("version")?,
    })
}

/// An enabled owner, as the "last owner" rule counts them.
fn is_enabled_owner(operator: &OperatorRecord) -> bool {
    operator.role == "owner" && !operator.disabled
}

impl Store {
    pub async fn insert_operator(
        &self,
        operator: &OperatorRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<OperatorRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut operator = operator.clone();
        operator.version = version;
        sqlx::query(
            "INSERT INTO operators (id, email, email_key, name, password_hash, role, disabled, \
             created_at, password_changed_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(operator.id.clone())
        .bind(operator.email.clone())
        .bind(email_key(&operator.email))
        .bind(operator.name.clone())
        .bind(operator.password_hash.clone())
        .bind(operator.role.clone())
        .bind(i64::from(operator.disabled))
        .bind(operator.created_at.0)
        .bind(operator.password_changed_at.map(|t| t.0))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "operator.create",
            &operator.id,
            None,
            Some(to_json(&operator)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(operator)
    }

    pub async fn get_operator(&self, id: &str) -> StoreResult<OperatorRecord> {
        let row = sqlx::query(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        operator_from_row(&row)
    }

    pub async fn operator_by_email(&self, email: &str) -> StoreResult<Option<OperatorRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE email_key = $1"
        ))
        .bind(email_key(email))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// Operators newest first, after the `(created_at, id)` of the cursor.
    pub async fn list_operators(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<OperatorRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators \
             WHERE created_at < $1 OR (created_at = $1 AND id < $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operator_from_row).collect()
    }

    /// How many owners exist, enabled or not (`tollgate bootstrap` creates the first).
    pub async fn owner_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM operators WHERE role = 'owner'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Writes an operator's change. The last enabled owner can be neither demoted nor
    /// disabled (`LastOwner`), checked under the write lock so two changes at once cannot
    /// both pass. With `end_sessions` (a disable, a new password) every session of the
    /// operator ends in the same transaction.
    pub async fn replace_operator(
        &self,
        before: &OperatorRecord,
        after: &OperatorRecord,
        end_sessions: bool,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<OperatorRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        if is_enabled_owner(before) && !is_enabled_owner(after) {
            let row = sqlx::query(
                "SELECT COUNT(*) FROM operators WHERE role = 'owner' AND disabled = 0 AND id <> $1",
            )
            .bind(before.id.clone())
            .fetch_one(&mut *tx)
            .await?;
            if row.try_get::<i64, _>(0)? == 0 {
                return Err(StoreError::LastOwner);
            }
        }
        let updated = sqlx::query(
            "UPDATE operators SET name = $1, role = $2, disabled = $3, password_hash = $4, \
             password_changed_at = $5, version = $6 WHERE id = $7 AND version = $8",
        )
        .bind(after.name.clone())
        .bind(after.role.clone())
        .bind(i64::from(after.disabled))
        .bind(after.password_hash.clone())
        .bind(after.password_changed_at.map(|t| t.0))
        .bind(version)
        .bind(before.id.clone())
        .bind(before.version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        if end_sessions {
            sqlx::query(
                "UPDATE sessions SET ended_at = $1 WHERE operator_id = $2 AND ended_at IS NULL",
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
            "operator.update",
            &after.id,
            Some(to_json(before)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(after)
    }

    pub async fn insert_token(
        &self,
        token: &AdminTokenRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<AdminTokenRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let mut token = token.clone();
        token.version = version;
        sqlx::query(&format!(
            "INSERT INTO admin_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(token.id.clone())
        .bind(token.name.clone())
        .bind(token.digest.0.to_vec())
        .bind(token.start.clone())
        .bind(to_json(&token.permissions))
        .bind(token.role.clone())
        .bind(token.expires_at.map(|t| t.0))
        .bind(token.created_at.0)
        .bind(to_json(&token.created_by))
        .bind(token.revoked_at.map(|t| t.0))
        .bind(token.last_used_at.map(|t| t.0))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "token.create",
            &token.id,
            None,
            Some(to_json(&token)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(token)
    }

    pub async fn get_token(&self, id: &str) -> StoreResult<AdminTokenRecord> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        token_from_row(&row)
    }

    pub async fn token_by_digest(&self, digest: &Digest) -> StoreResult<Option<AdminTokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE digest = $1"
        ))
        .bind(digest.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Tokens newest first, after the `(created_at, id)` of the cursor.
    pub async fn list_tokens(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<AdminTokenRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM admin_tokens \
             WHERE created_at < $1 OR (created_at = $1 AND id < $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token; final. `Conflict` if it changed (or was revoked) meanwhile.
    pub async fn revoke_token(
        &self,
        before: &AdminTokenRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<AdminTokenRecord> {
        let (mut tx, version) = self.begin_write(now).await?;
        let updated = sqlx::query(
            "UPDATE admin_tokens SET revoked_at = $1, version = $2 \
             WHERE id = $3 AND version = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(version)
        .bind(before.id.clone())
        .bind(before.version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        let mut after = before.clone();
        after.revoked_at = Some(Timestamp(now));
        after.version = version;
        audit(
            &mut tx,
            now,
            actor,
            "token.revoke",
            &after.id,
            Some(to_json(before)),
            Some(to_json(&after)),
        )
        .await?;
        self.finish_write(tx, version).await?;
        Ok(after)
    }

    /// Notes a token's use, at most once a minute (a write per admin call is not needed
    /// to say when a token was last used).
    pub async fn touch_token(&self, id: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(now - 60_000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_session(
        &self,
        digest: &Digest,
        session: &SessionRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_digest, operator_id, csrf_digest, created_at, expires_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(digest.0.to_vec())
        .bind(session.operator_id.clone())
        .bind(session.csrf_digest.0.to_vec())
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, digest: &Digest) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT operator_id, csrf_digest, created_at, expires_at, ended_at FROM sessions \
             WHERE id_digest = $1",
        )
        .bind(digest.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionRecord {
                operator_id: row.try_get("operator_id")?,
                csrf_digest: digest_of(row.try_get("csrf_digest")?)?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                ended_at: row.try_get("ended_at")?,
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, digest: &Digest, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id_digest = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(digest.0.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Failed sign-ins for an email since `since`: how many, and the oldest one's time.
    pub async fn signin_failures(
        &self,
        email: &str,
        since: i64,
    ) -> StoreResult<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(at) FROM signin_failures WHERE email_key = $1 AND at >= $2",
        )
        .bind(email_key(email))
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Records a failed sign-in (known email or not, alike), forgetting those older than
    /// `forget_before`, and audits it.
    pub async fn record_signin_failure(
        &self,
        email: &str,
        now: i64,
        forget_before: i64,
    ) -> StoreResult<()> {
        let key = email_key(email);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM signin_failures WHERE email_key = $1 AND at < $2")
            .bind(key.clone())
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO signin_failures (email_key, at) VALUES ($1, $2)")
            .bind(key.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            &Actor::system("sign-in"),
            "session.failed",
            &key,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A successful sign-in: its session, the email's failures forgotten, an audit entry.
    pub async fn start_session(
        &self,
        digest: &Digest,
        session: &SessionRecord,
        operator: &OperatorRecord,
        now: i64,
    ) -> StoreResult<()> {
        self.insert_session(digest, session).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM signin_failures WHERE email_key = $1")
            .bind(email_key(&operator.email))
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            &Actor::operator(&operator.id, &operator.name),
            "session.create",
            &operator.id,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An audit entry for something that changes no record (a sign-out).
    pub async fn audit_event(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        audit(&mut tx, now, actor, action, target, None, None).await?;
        tx.commit().await?;
        Ok(())
    }
}
