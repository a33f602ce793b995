//! Usage counting off the request path: per-key atomic counters, flushed to the store in
//! batches. A restart loses at most one batch interval; a clean stop loses nothing.

use crate::clock;
use crate::denial::Denial;
use crate::policy::rate_limit::local::Held;
use crate::short_id::ShortId;
use crate::store::Store;
use once_cell::race::OnceBox;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often counts are written: each batch is a write per active key, which competes with
/// the data plane for the CPU (on one shared core, every 2 s with 10,000 busy keys doubled
/// the single-connection p99).
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// A key's `last_used_at` is rewritten once it has moved on by this much since this
/// replica last wrote it (always on its first use, and exactly on a clean stop). Writing it
/// every batch would rewrite a random page of the keys table per active key per batch: with
/// 10,000 busy keys on SQLite that was most of the gateway's background CPU, and with it
/// the single-core latency tail.
pub const LAST_USED_STEP_MS: i64 = 60_000;

/// The outcome of a request made with a known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    KeyRevoked,
    KeyExpired,
    IpNotAllowed,
    InsufficientPermission,
    RateLimited,
    QuotaExceeded,
    CreditsExhausted,
}

const OUTCOMES: [Outcome; 8] = [
    Outcome::Allowed,
    Outcome::KeyRevoked,
    Outcome::KeyExpired,
    Outcome::IpNotAllowed,
    Outcome::InsufficientPermission,
    Outcome::RateLimited,
    Outcome::QuotaExceeded,
    Outcome::CreditsExhausted,
];

impl Outcome {
    /// What a refusal of a known key counts as; `None` for a refusal that says nothing
    /// about the key (an unknown key, a malformed request).
    pub fn of(denial: &Denial) -> Option<Outcome> {
        match denial {
            Denial::KeyRevoked => Some(Outcome::KeyRevoked),
            Denial::KeyExpired => Some(Outcome::KeyExpired),
            Denial::IpNotAllowed => Some(Outcome::IpNotAllowed),
            Denial::InsufficientPermission { .. } => Some(Outcome::InsufficientPermission),
            Denial::RateLimited => Some(Outcome::RateLimited),
            Denial::QuotaExceeded => Some(Outcome::QuotaExceeded),
            Denial::CreditsExhausted => Some(Outcome::CreditsExhausted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::KeyRevoked => "key_revoked",
            Outcome::KeyExpired => "key_expired",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::InsufficientPermission => "insufficient_permission",
            Outcome::RateLimited => "rate_limited",
            Outcome::QuotaExceeded => "quota_exceeded",
            Outcome::CreditsExhausted => "credits_exhausted",
        }
    }
}

/// A quota that refused a key's request: its own daily quota or credits, or its owner's.
/// Each is announced by `quota.exceeded` once a day, for the key or for its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Day,
    Credits,
    OwnerDay,
    OwnerCredits,
}

impl Exceeded {
    const ALL: [Exceeded; 4] = [
        Exceeded::Day,
        Exceeded::Credits,
        Exceeded::OwnerDay,
        Exceeded::OwnerCredits,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The event's `quota.window`.
    pub fn window(self) -> &'static str {
        match self {
            Exceeded::Day | Exceeded::OwnerDay => "day",
            Exceeded::Credits | Exceeded::OwnerCredits => "credits",
        }
    }

    /// Whether it is the owner's quota, announced for the owner rather than the key.
    pub fn owner(self) -> bool {
        matches!(self, Exceeded::OwnerDay | Exceeded::OwnerCredits)
    }
}

/// What one key keeps while it is in use: its counters since the last flush, and its
/// limiter windows.
#[derive(Debug)]
pub struct UsageCell {
    key_id: Arc<str>,
    counts: [AtomicU64; OUTCOMES.len()],
    last_used: AtomicI64,
    /// The `last_used` last handed to the store (0: none yet, or the write failed).
    written: AtomicI64,
    /// The quotas that refused it since the last flush, one [`Exceeded::bit`] each.
    exceeded: AtomicU8,
    /// The in-process limiter's state for this key, found without a map lookup.
    limits: Held,
}

impl UsageCell {
    pub fn limits(&self) -> &Held {
        &self.limits
    }
}

/// Where a credential's cell lives: created on first use, carried to the credential's
/// next version when the snapshot changes, so no count is lost by a sync. One pointer
/// wide, as a million keys each carry one.
#[derive(Debug, Default, Clone)]
pub struct UsageSlot(OnceBox<Arc<UsageCell>>);

impl UsageSlot {
    /// A slot already holding `previous`'s cell, if it had one.
    pub fn carried_from(previous: Option<&UsageSlot>) -> UsageSlot {
        let slot = UsageSlot::default();
        if let Some(cell) = previous.and_then(|p| p.0.get()) {
            let _ = slot.0.set(Box::new(cell.clone()));
        }
        slot
    }
}

/// Every cell that has counted something, for the flusher.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    cells: Mutex<Vec<Arc<UsageCell>>>,
}

impl UsageRecorder {
    /// The cell of the key `slot` belongs to, made and listed on the key's first use.
    pub fn cell<'s>(&self, slot: &'s UsageSlot, key_id: &ShortId) -> &'s UsageCell {
        if let Some(cell) = slot.0.get() {
            return cell;
        }
        let cell = Arc::new(UsageCell {
            key_id: Arc::from(&*key_id.as_str()),
            counts: Default::default(),
            last_used: AtomicI64::new(0),
            written: AtomicI64::new(0),
            exceeded: AtomicU8::new(0),
            limits: Held::new(),
        });
        // Of two first uses at once, one cell wins; only the winner is listed.
        if slot.0.set(Box::new(cell.clone())).is_ok() {
            if let Ok(mut cells) = self.cells.lock() {
                cells.push(cell.clone());
            }
        }
        slot.0.get_or_init(|| Box::new(cell))
    }

    /// Counts one request by its outcome, and the quota that refused it, if one did.
    pub fn record(
        &self,
        slot: &UsageSlot,
        key_id: &ShortId,
        outcome: Outcome,
        exceeded: Option<Exceeded>,
        now: i64,
    ) {
        let cell = self.cell(slot, key_id);
        cell.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Allowed {
            cell.last_used.store(now, Ordering::Relaxed);
        }
        if let Some(bit) = exceeded.map(Exceeded::bit) {
            // Read first: a flood of refusals does not keep writing one cache line.
            if cell.exceeded.load(Ordering::Relaxed) & bit == 0 {
                cell.exceeded.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// Takes every count accumulated so far, attributing it to the UTC day of `now`, and
    /// the last uses that moved on by [`LAST_USED_STEP_MS`] (every one when `exact`).
    pub fn drain(&self, now: i64, exact: bool) -> crate::store::UsageBatch {
        let day = clock::day_of(now);
        let cells = self.cells.lock().map(|c| c.clone()).unwrap_or_default();
        // One row per key and outcome, even if a key ever had two cells: a multi-row
        // upsert may not touch one row twice.
        let mut counts: std::collections::BTreeMap<(Arc<str>, &'static str), i64> =
            Default::default();
        let mut last_used: std::collections::BTreeMap<Arc<str>, i64> = Default::default();
        let mut exceeded = Vec::new();
        for cell in cells {
            let bits = cell.exceeded.swap(0, Ordering::Relaxed);
            for quota in Exceeded::ALL {
                if bits & quota.bit() != 0 {
                    exceeded.push((cell.key_id.to_string(), day, quota));
                }
            }
            for (index, outcome) in OUTCOMES.iter().enumerate() {
                let count = cell.counts[index].swap(0, Ordering::Relaxed);
                if count > 0 {
                    *counts
                        .entry((cell.key_id.clone(), outcome.as_str()))
                        .or_default() += count as i64;
                }
            }
            let used = cell.last_used.load(Ordering::Relaxed);
            let written = cell.written.load(Ordering::Relaxed);
            if used > written && (exact || written == 0 || used - written >= LAST_USED_STEP_MS) {
                cell.written.store(used, Ordering::Relaxed);
                let at = last_used.entry(cell.key_id.clone()).or_default();
                *at = (*at).max(used);
            }
        }
        crate::store::UsageBatch {
            counts: counts
                .into_iter()
                .map(|((key_id, outcome), count)| (key_id.to_string(), day, outcome, count))
                .collect(),
            last_used: last_used
                .into_iter()
                .map(|(key_id, at)| (key_id.to_string(), at))
                .collect(),
            exceeded,
            hour: now.div_euclid(3_600_000),
        }
    }

    /// Puts counts back after a failed write, so the next flush retries them.
    fn restore(&self, batch: crate::store::UsageBatch) {
        let Ok(cells) = self.cells.lock() else { return };
        let by_id: std::collections::HashMap<&str, &Arc<UsageCell>> =
            cells.iter().map(|cell| (&*cell.key_id, cell)).collect();
        for (key_id, _, outcome, count) in batch.counts {
            let index = OUTCOMES.iter().position(|o| o.as_str() == outcome);
            if let (Some(cell), Some(index)) = (by_id.get(key_id.as_str()), index) {
                cell.counts[index].fetch_add(count as u64, Ordering::Relaxed);
            }
        }
        for (key_id, _, quota) in batch.exceeded {
            if let Some(cell) = by_id.get(key_id.as_str()) {
                cell.exceeded.fetch_or(quota.bit(), Ordering::Relaxed);
            }
        }
        for (key_id, at) in batch.last_used {
            if let Some(cell) = by_id.get(key_id.as_str()) {
                cell.last_used.fetch_max(at, Ordering::Relaxed);
                cell.written.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Writes what accumulated within `deadline`; on failure or timeout keeps it for the
    /// next attempt (a write cut off after its commit may then count twice, never zero times).
    pub async fn flush(&self, store: &Store, deadline: Duration, exact: bool) {
        let batch = self.drain(clock::now_ms(), exact);
        if batch.is_empty() {
            return;
        }
        match tokio::time::timeout(deadline, store.add_usage(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "usage flush failed; will retry");
                self.restore(batch);
            }
            Err(_) => {
                tracing::warn!("usage flush timed out; will retry");
                self.restore(batch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_credential_being_replaced() {
        let recorder = UsageRecorder::default();
        let id = ShortId::new("key_1");
        let first = UsageSlot::default();
        recorder.record(&first, &id, Outcome::Allowed, None, 1_000);
        let second = UsageSlot::carried_from(Some(&first));
        recorder.record(&second, &id, Outcome::Allowed, None, 2_000);
        recorder.record(&second, &id, Outcome::IpNotAllowed, None, 2_500);
        let batch = recorder.drain(86_400_000 * 3 + 5, false);
        assert_eq!(
            batch.counts,
            [
                ("key_1".to_string(), 3, "allowed", 2),
                ("key_1".to_string(), 3, "ip_not_allowed", 1)
            ]
        );
        assert_eq!(batch.last_used, [("key_1".to_string(), 2_000)]);
        assert!(recorder.drain(0, false).is_empty());
    }

    #[test]
    fn a_quota_that_refused_is_handed_over_once_per_flush_and_kept_when_a_write_fails() {
        let recorder = UsageRecorder::default();
        let id = ShortId::new("key_1");
        let slot = UsageSlot::default();
        for _ in 0..3 {
            let over = Some(Exceeded::OwnerCredits);
            recorder.record(&slot, &id, Outcome::CreditsExhausted, over, 1_000);
        }
        recorder.record(
            &slot,
            &id,
            Outcome::QuotaExceeded,
            Some(Exceeded::Day),
            1_000,
        );
        let batch = recorder.drain(86_400_000 + 1, false);
        assert_eq!(
            batch.exceeded,
            [
                ("key_1".to_string(), 1, Exceeded::Day),
                ("key_1".to_string(), 1, Exceeded::OwnerCredits)
            ]
        );
        assert!(Exceeded::OwnerCredits.owner() && !Exceeded::Day.owner());
        assert_eq!(Exceeded::OwnerCredits.window(), "credits");
        recorder.restore(batch.clone());
        assert_eq!(
            recorder.drain(86_400_000 + 2, false).exceeded,
            batch.exceeded
        );
        assert!(recorder.drain(86_400_000 + 3, false).exceeded.is_empty());
    }

    const AT: i64 = 1_700_000_000_000;

    /// A recorder that has counted one allowed request of `key_1` at [`AT`].
    fn used_once() -> (UsageRecorder, ShortId, UsageSlot) {
        let recorder = UsageRecorder::default();
        let id = ShortId::new("key_1");
        let slot = UsageSlot::default();
        recorder.record(&slot, &id, Outcome::Allowed, None, AT);
        (recorder, id, slot)
    }

    #[test]
    fn last_use_is_rewritten_once_it_moves_on_by_a_step_and_exactly_at_the_end() {
        let (recorder, id, slot) = used_once();
        let at = AT;
        // The first use is written at once.
        assert_eq!(recorder.drain(at, false).last_used, [("key_1".into(), at)]);
        // Later uses within a step are counted but not rewritten...
        recorder.record(&slot, &id, Outcome::Allowed, None, at + 30_000);
        let batch = recorder.drain(at + 30_000, false);
        assert_eq!(batch.counts.len(), 1);
        assert!(batch.last_used.is_empty());
        // ...until the last use is a step newer than the one written.
        recorder.record(&slot, &id, Outcome::Allowed, None, at + LAST_USED_STEP_MS);
        let step = at + LAST_USED_STEP_MS;
        assert_eq!(
            recorder.drain(step, false).last_used,
            [("key_1".into(), step)]
        );
        // A clean stop writes the exact last use.
        recorder.record(&slot, &id, Outcome::Allowed, None, step + 1);
        assert_eq!(
            recorder.drain(step + 1, true).last_used,
            [("key_1".into(), step + 1)]
        );
        assert!(recorder.drain(step + 2, true).is_empty());
    }

    #[test]
    fn a_failed_write_is_retried_whole() {
        let (recorder, _, _) = used_once();
        let failed = recorder.drain(AT, false);
        recorder.restore(failed.clone());
        assert_eq!(recorder.drain(AT + 1, false), failed);
    }
}
