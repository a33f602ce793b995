//! Webhook endpoints and their deliveries, the leases by which replicas claim due
//! deliveries (so each is attempted by one replica at a time), the events sent once
//! (expiry, quota) and the event stream. The outbox write itself is in `outbox.rs`.

use super::admin_tables::audit;
use super::keys::{key_from_row, KEY_COLUMNS};
use super::outbox::{emit, emit_once_in};
use super::owner_table::{owner_from_row, OWNER_COLUMNS};
use super::records::{Actor, Timestamp};
use super::statement::to_json;
use super::{Dialect, Store, StoreError, StoreResult};
use crate::clock::rfc3339;
use crate::usage::Exceeded;
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// A webhook endpoint as the admin API shows it; its secrets are shown once, by the
/// handler that made them.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whether a previous secret still signs (for 24 h after a rotation).
    pub previous_secret_until: Option<Timestamp>,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub previous_secret: Option<String>,
}

impl WebhookRecord {
    /// The secrets that sign a message sent at `now`: the current one, then the previous
    /// one during its overlap.
    pub fn signing_secrets(&self, now: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if now < until.0 {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// What a change to an endpoint is audited as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookChange {
    Update,
    RotateSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> StoreResult<Self> {
        match text {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(StoreError::Unavailable(format!(
                "unknown delivery state \"{other}\""
            ))),
        }
    }
}

/// One event to one endpoint, as `GET /webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// When it is tried next; `null` once delivered or failed.
    pub next_attempt_at: Option<Timestamp>,
    pub state: DeliveryState,
    pub created_at: Timestamp,
    /// Where the newest-first listing continues.
    #[serde(skip)]
    pub event_seq: i64,
}

/// An event as `GET /events` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    pub data: Value,
    /// Its place in the outbox: the cursor of the stream.
    #[serde(skip)]
    pub seq: i64,
}

/// A delivery a replica has claimed: what it needs to make the attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: String,
    pub endpoint: WebhookRecord,
    pub event_id: String,
    /// The body, byte for byte the same on every attempt.
    pub body: String,
    /// Attempts made, this one included.
    pub attempts: i64,
}

const WEBHOOK_COLUMNS: &str = "id, url, events, description, disabled, secret, previous_secret, \
    previous_until, created_at, updated_at";

fn webhook_from_row(row: &AnyRow) -> StoreResult<WebhookRecord> {
    let events: String = row.try_get("events")?;
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: row.try_get("description")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_until: row
            .try_get::<Option<i64>, _>("previous_until")?
            .map(Timestamp),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

const DELIVERY_COLUMNS: &str = "d.id, e.id AS event_id, e.type AS kind, d.attempts, \
    d.last_status, d.last_error, d.next_attempt_at, d.state, d.created_at, d.event_seq";

fn delivery_from_row(row: &AnyRow) -> StoreResult<DeliveryRecord> {
    let state = DeliveryState::parse(&row.try_get::<String, _>("state")?)?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        kind: row.try_get("kind")?,
        attempts: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: (state == DeliveryState::Pending)
            .then(|| row.try_get("next_attempt_at").map(Timestamp))
            .transpose()?,
        state,
        created_at: Timestamp(row.try_get("created_at")?),
        event_seq: row.try_get("event_seq")?,
    })
}

/// `quota.exceeded` for a key refused by its own daily quota (`quota.window` "day") or
/// credits ("credits") on `day` (days since the epoch), or for the key's owner when it was
/// the owner's quota: once per key or owner, window and day, across restarts and
/// replicas. Its data is the key's or the owner's record, with the window, the date and
/// (for an owner) the key whose request found it spent.
pub(super) async fn quota_exceeded(
    tx: &mut Transaction<'static, Any>,
    key_id: &str,
    day: i64,
    quota: Exceeded,
    now: i64,
) -> StoreResult<()> {
    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"))
        .bind(key_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    let key = row.as_ref().map(key_from_row).transpose()?;
    let window = quota.window();
    let (subject, mut data) = if quota.owner() {
        // The key's owner now; a key that has since left its owner announces nothing.
        let Some(owner_id) = key.and_then(|key| key.owner_id) else {
            return Ok(());
        };
        let row = sqlx::query(&format!("SELECT {OWNER_COLUMNS} FROM owners WHERE id = $1"))
            .bind(owner_id.clone())
            .fetch_optional(&mut **tx)
            .await?;
        let Some(owner) = row.as_ref().map(owner_from_row).transpose()? else {
            return Ok(());
        };
        let mut data = serde_json::json!(owner);
        data["quota"] = serde_json::json!({"key_id": key_id});
        (owner_id, data)
    } else {
        let data = match key {
            Some(key) => serde_json::json!(key),
            None => serde_json::json!({"id": key_id}),
        };
        (key_id.to_string(), data)
    };
    data["quota"]["window"] = window.into();
    data["quota"]["date"] = date.clone().into();
    // A key's daily quota keeps the mark earlier versions wrote.
    let mark = match window {
        "day" => format!("quota.exceeded:{date}"),
        other => format!("quota.exceeded:{other}:{date}"),
    };
    emit_once_in(tx, &subject, &mark, "quota.exceeded", &data, now).await?;
    Ok(())
}

impl Store {
    /// A transaction for events that belong to no versioned change (an expiry warning, a
    /// day's quota): it takes the write lock too, so events commit in the order of their
    /// place in the outbox and a reader of the stream never skips one.
    async fn begin_events(&self) -> StoreResult<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await?;
        self.dialect.lock_writes(&mut tx).await?;
        Ok(tx)
    }

    /// Writes the event `kind` about `subject` once: a second call with the same `mark`,
    /// from this process after a restart or from another replica, writes nothing. Returns
    /// whether it was written now.
    pub async fn emit_once(
        &self,
        subject: &str,
        mark: &str,
        kind: &str,
        data: &Value,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_events().await?;
        let written = emit_once_in(&mut tx, subject, mark, kind, data, now).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// `key.expiring` 7 days and 1 day before a live key's `expires_at`, `key.expired`
    /// once it has passed: each once per key, the latest due when several are (a gateway
    /// that was down sends no stale warning). One transaction under the write lock, so one
    /// replica scans at a time; keys that expired over a week ago are left alone.
    pub async fn scan_expiry(&self, now: i64) -> StoreResult<usize> {
        const DAY: i64 = 86_400_000;
        let mut tx = self.begin_events().await?;
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS}, stage FROM (SELECT *, CASE WHEN expires_at <= $1 THEN 'key.expired' \
             WHEN expires_at <= $2 THEN 'key.expiring:1d' ELSE 'key.expiring:7d' END AS stage \
             FROM keys WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
             AND expires_at <= $3 AND expires_at > $4) AS due \
             WHERE NOT EXISTS (SELECT 1 FROM event_marks m WHERE m.subject = due.id AND m.mark = due.stage) \
             LIMIT 1000"
        ))
        .bind(now)
        .bind(now + DAY)
        .bind(now + 7 * DAY)
        .bind(now - 7 * DAY)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let key = key_from_row(row)?;
            let stage: String = row.try_get("stage")?;
            let kind = stage.split(':').next().unwrap_or("key.expiring");
            emit_once_in(&mut tx, &key.id, &stage, kind, &serde_json::json!(key), now).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// An audited event about a record that does not change (a leak reported with
    /// `action: notify`).
    pub async fn audit_with_events(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        record: &Value,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_events().await?;
        audit(
            &mut tx,
            now,
            actor,
            action,
            target,
            None,
            Some(to_json(record)),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_webhook(
        &self,
        record: &WebhookRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<WebhookRecord> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO webhook_endpoints ({WEBHOOK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(record.id.clone())
        .bind(record.url.clone())
        .bind(to_json(&record.events))
        .bind(record.description.clone())
        .bind(i64::from(record.disabled))
        .bind(record.secret.clone())
        .bind(record.previous_secret.clone())
        .bind(record.previous_secret_until.map(|t| t.0))
        .bind(record.created_at.0)
        .bind(record.updated_at.0)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            now,
            actor,
            "webhook.create",
            &record.id,
            None,
            Some(to_json(record)),
        )
        .await?;
        tx.commit().await?;
        Ok(record.clone())
    }

    pub async fn get_webhook(&self, id: &str) -> StoreResult<WebhookRecord> {
        let row = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        webhook_from_row(&row)
    }

    /// Endpoints newest first, after the `(created_at, id)` of a cursor.
    pub async fn list_webhooks(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<WebhookRecord>> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints \
             WHERE created_at < $1 OR (created_at = $1 AND id < $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Replaces an endpoint if it is still as `before` was ([`StoreError::Conflict`]
    /// otherwise), with its audit entry.
    pub async fn replace_webhook(
        &self,
        before: &WebhookRecord,
        after: &WebhookRecord,
        change: WebhookChange,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<WebhookRecord> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, disabled = $4, \
             secret = $5, previous_secret = $6, previous_until = $7, updated_at = $8 \
             WHERE id = $9 AND updated_at = $10 AND secret = $11",
        )
        .bind(after.url.clone())
        .bind(to_json(&after.events))
        .bind(after.description.clone())
        .bind(i64::from(after.disabled))
        .bind(after.secret.clone())
        .bind(after.previous_secret.clone())
        .bind(after.previous_secret_until.map(|t| t.0))
        .bind(after.updated_at.0)
        .bind(before.id.clone())
        .bind(before.updated_at.0)
        .bind(before.secret.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Conflict);
        }
        let action = match change {
            WebhookChange::Update => "webhook.update",
            WebhookChange::RotateSecret => "webhook.rotate_secret",
        };
        audit(
            &mut tx,
            now,
            actor,
            action,
            &after.id,
            Some(to_json(before)),
            Some(to_json(after)),
        )
        .await?;
        tx.commit().await?;
        Ok(after.clone())
    }

    /// Deletes an endpoint and its deliveries, pending or not.
    pub async fn delete_webhook(
        &self,
        before: &WebhookRecord,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            now,
            actor,
            "webhook.delete",
            &before.id,
            Some(to_json(before)),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Enqueues a `webhook.test` event for one endpoint; returns the event's id.
    pub async fn enqueue_test(&self, endpoint: &WebhookRecord, now: i64) -> StoreResult<String> {
        let mut tx = self.begin_events().await?;
        let data = serde_json::json!({"webhook_id": endpoint.id, "url": endpoint.url});
        let id = emit(&mut tx, now, "webhook.test", &data, Some(&endpoint.id)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// An endpoint's deliveries, newest first, before the event `before_seq` of a cursor.
    pub async fn list_deliveries(
        &self,
        endpoint_id: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.endpoint_id = $1 AND d.event_seq < $2 ORDER BY d.event_seq DESC LIMIT $3"
        ))
        .bind(endpoint_id.to_string())
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn get_delivery(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> StoreResult<DeliveryRecord> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.endpoint_id = $1 AND d.id = $2"
        ))
        .bind(endpoint_id.to_string())
        .bind(delivery_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        delivery_from_row(&row)
    }

    /// Makes a failed delivery due now. Its attempts are kept: a retry that fails again
    /// is failed at once, having had its `max_attempts`.
    pub async fn retry_delivery(
        &self,
        endpoint_id: &str,
        delivery_id: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<DeliveryRecord> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, \
             lease_until = NULL, lease_owner = NULL \
             WHERE endpoint_id = $2 AND id = $3 AND state = 'failed'",
        )
        .bind(now)
        .bind(endpoint_id.to_string())
        .bind(delivery_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            // Either there is no such delivery, or it is not failed.
            return match self.get_delivery(endpoint_id, delivery_id).await {
                Ok(_) => Err(StoreError::Conflict),
                Err(error) => Err(error),
            };
        }
        audit(
            &mut tx,
            now,
            actor,
            "webhook.retry",
            delivery_id,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        self.get_delivery(endpoint_id, delivery_id).await
    }

    /// Claims up to `limit` due deliveries of enabled endpoints for `owner` until
    /// `lease_until`, counting the attempt now: a replica that dies mid-delivery has used
    /// it, and another takes the delivery over once the lease has run out. On PostgreSQL
    /// the rows are taken with `FOR UPDATE SKIP LOCKED`, so replicas claiming at the same
    /// moment take different deliveries.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>> {
        // A read first: most polls find nothing due, and need no write.
        let due = sqlx::query(
            "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d \
               JOIN webhook_endpoints w ON w.id = d.endpoint_id \
               WHERE d.state = 'pending' AND d.next_attempt_at <= $3 AND w.disabled = 0 \
               AND (d.lease_until IS NULL OR d.lease_until <= $3) \
               ORDER BY d.next_attempt_at LIMIT $4 {lock}) \
             RETURNING id, endpoint_id, event_seq, attempts"
        ))
        .bind(owner.to_string())
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let endpoint_id: String = row.try_get("endpoint_id")?;
            let seq: i64 = row.try_get("event_seq")?;
            let event = sqlx::query("SELECT id, body FROM events WHERE seq = $1")
                .bind(seq)
                .fetch_one(&self.pool)
                .await?;
            claimed.push(Claimed {
                delivery_id: row.try_get("id")?,
                endpoint: self.get_webhook(&endpoint_id).await?,
                event_id: event.try_get("id")?,
                body: event.try_get("body")?,
                attempts: row.try_get("attempts")?,
            });
        }
        Ok(claimed)
    }

    /// Records the outcome of an attempt, if `owner` still holds the lease.
    pub async fn finish_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        state: DeliveryState,
        status: Option<i64>,
        error: Option<&str>,
        next_attempt_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, last_status = $2, last_error = $3, \
             next_attempt_at = $4, lease_until = NULL, lease_owner = NULL \
             WHERE id = $5 AND lease_owner = $6",
        )
        .bind(state.as_str())
        .bind(status)
        .bind(error.map(str::to_string))
        .bind(next_attempt_at)
        .bind(delivery_id.to_string())
        .bind(owner.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries not yet delivered or failed.
    pub async fn queue_depth(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Events after `after_seq`, oldest first.
    pub async fn list_events(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT seq, id, type, at, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let body: Value =
                    serde_json::from_str(&row.try_get::<String, _>("body")?).unwrap_or_default();
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    id: row.try_get("id")?,
                    kind: row.try_get("type")?,
                    timestamp: rfc3339(row.try_get("at")?),
                    data: body.get("data").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }
}
