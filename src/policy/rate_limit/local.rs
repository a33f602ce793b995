//! In-process counters: one state per caller in a sharded map, checked and counted under
//! that state's lock, so concurrent requests of one caller never overshoot a limit. A key's
//! state, and its owner's, are also held by the key itself ([`Held`]), so its requests find
//! them without a map lookup.

use super::credits::{spend, Balance, CreditAsk, Spent};
use super::{
    decide, states, CallerKey, Counted, Verdict, WindowKind, Windows, DAY_MS, MAX_WINDOWS,
};
use dashmap::DashMap;
use smallvec::SmallVec;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Callers idle this long may be forgotten (their daily count was persisted first).
const IDLE_MS: i64 = 10 * 60_000;
/// Over `max_callers` (a flood of new addresses), callers idle this long are forgotten
/// too, even mid-day: memory stays bounded, at the price of their daily count.
const CROWDED_IDLE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: WindowKind,
    start: i64,
    count: u64,
}

/// One caller's windows. Four fit inline (burst, minute, day and one route's), so a check
/// touches one allocation; a caller of several limited routes spills to the heap.
#[derive(Debug)]
pub struct CallerState {
    slots: SmallVec<[Slot; 4]>,
    last_seen: i64,
    /// The day count changed since it was last persisted.
    day_dirty: bool,
    /// In the map, so persisted and swept; a held state the sweep forgot is listed again
    /// on its next use.
    listed: bool,
    /// The caller's credits as counted here, once it has spent some.
    credits: Option<Balance>,
    /// Credits were spent since the balance was last written back.
    credits_dirty: bool,
}

/// A caller's state as the map and a key's usage cell share it.
pub type Shared = Arc<Mutex<CallerState>>;

/// Where a key keeps its limiter state and its owner's: each set on the key's first check
/// that needs it, carried with its usage cell across snapshots.
#[derive(Debug, Default)]
pub struct Held {
    own: OnceLock<Shared>,
    /// The owner's state, with the owner it was taken for. A key moved to another owner
    /// finds its new owner's state in the map, as a key without a cell does.
    owner: OnceLock<(CallerKey, Shared)>,
}

impl Held {
    pub fn new() -> Held {
        Held::default()
    }
}

fn listed() -> Shared {
    Arc::new(Mutex::new(CallerState {
        slots: SmallVec::new(),
        last_seen: 0,
        day_dirty: false,
        listed: true,
        credits: None,
        credits_dirty: false,
    }))
}

/// A state's lock: counting cannot panic half-way, so a poisoned lock holds whole counts.
fn lock(state: &Shared) -> MutexGuard<'_, CallerState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CallerState {
    fn slot(&mut self, kind: WindowKind, start: i64) -> &mut Slot {
        let index = match self.slots.iter().position(|s| s.kind == kind) {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    kind,
                    start,
                    count: 0,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        if slot.start != start {
            *slot = Slot {
                kind,
                start,
                count: 0,
            };
        }
        slot
    }

    fn count(&self, kind: WindowKind, start: i64) -> u64 {
        self.slots
            .iter()
            .find(|s| s.kind == kind && s.start == start)
            .map_or(0, |s| s.count)
    }

    /// Counts one request in every window, or none when a window is full.
    fn check(&mut self, windows: &Windows, now: i64) -> Verdict {
        check_pair(self, None, windows, None, now)
    }

    /// Takes in the counts of `other`, a state made for the same caller through the map
    /// while this one was unlisted: it started from nothing then, so counts of one window
    /// add up, and the later of two windows of a kind wins.
    fn absorb(&mut self, other: &CallerState) {
        for theirs in &other.slots {
            match self.slots.iter_mut().find(|s| s.kind == theirs.kind) {
                Some(ours) if ours.start == theirs.start => ours.count += theirs.count,
                Some(ours) if ours.start < theirs.start => *ours = *theirs,
                Some(_) => {}
                None => self.slots.push(*theirs),
            }
        }
        self.last_seen = self.last_seen.max(other.last_seen);
        self.day_dirty |= other.day_dirty;
        // The later generation's balance, or the lower of one generation (both spent from
        // the same stored balance: the lower has more of the spending).
        match (&mut self.credits, other.credits) {
            (Some(ours), Some(theirs)) if theirs.generation > ours.generation => *ours = theirs,
            (Some(ours), Some(theirs)) if theirs.generation == ours.generation => {
                ours.remaining = ours.remaining.min(theirs.remaining)
            }
            (None, theirs) => self.credits = theirs,
            _ => {}
        }
        self.credits_dirty |= other.credits_dirty;
    }
}

/// The state that counts a window: the owner's for the owner's windows, else the caller's.
fn pick<'s>(
    own: &'s mut CallerState,
    owner: &'s mut Option<&mut CallerState>,
    kind: WindowKind,
) -> &'s mut CallerState {
    match owner {
        Some(owner) if kind.is_owner() => owner,
        _ => own,
    }
}

/// Spends the request's cost from the caller's credits and its owner's, or from neither;
/// `None` when neither has credits.
fn pay(
    own: &mut CallerState,
    owner: &mut Option<&mut CallerState>,
    ask: &CreditAsk,
    now: i64,
) -> Option<Spent> {
    let mut key = ask.key.map(|stored| stored.current(own.credits, now));
    let mut shared = match (ask.owner, owner.as_deref()) {
        (Some(stored), Some(state)) => Some(stored.current(state.credits, now)),
        _ => None,
    };
    let spent = spend(ask.cost, key.as_mut(), shared.as_mut())?;
    if !spent.exhausted() {
        if let Some(balance) = key {
            own.credits = Some(balance);
            own.credits_dirty = true;
        }
        if let (Some(balance), Some(state)) = (shared, owner.as_deref_mut()) {
            state.credits = Some(balance);
            state.credits_dirty = true;
        }
    }
    Some(spent)
}

/// Counts one request in every window of the caller and of its owner and spends its
/// credits, or does none of it when a window is full or a balance too low: a refused
/// request counts against neither.
fn check_pair(
    own: &mut CallerState,
    mut owner: Option<&mut CallerState>,
    windows: &Windows,
    ask: Option<&CreditAsk>,
    now: i64,
) -> Verdict {
    let mut used = [0u64; MAX_WINDOWS];
    let count = windows.iter().count();
    for (index, spec) in windows.iter().enumerate() {
        used[index] = pick(own, &mut owner, spec.kind)
            .slot(spec.kind, spec.start(now))
            .count;
    }
    let refused_by = decide(windows, &mut used[..count]);
    let credits = match (refused_by, ask) {
        (None, Some(ask)) => pay(own, &mut owner, ask, now),
        _ => None,
    };
    if credits.is_some_and(Spent::exhausted) {
        // Refused for its credits: the windows `decide` counted are given back.
        for count in used[..count].iter_mut() {
            *count -= 1;
        }
    } else if refused_by.is_none() {
        for (index, spec) in windows.iter().enumerate() {
            let state = pick(own, &mut owner, spec.kind);
            state.slot(spec.kind, spec.start(now)).count = used[index];
            if spec.kind.is_day() {
                state.day_dirty = true;
            }
        }
    }
    own.last_seen = now;
    if let Some(owner) = owner {
        owner.last_seen = now;
    }
    Verdict {
        refused_by,
        windows: states(windows, &used[..count], now),
        tier: windows.tier,
        fallback: false,
        credits,
    }
}

pub struct LocalLimiter {
    /// Keyed by callers the client chooses (addresses, keys): a seeded, quality hash.
    callers: DashMap<CallerKey, Shared, foldhash::quality::RandomState>,
    /// Above this many callers, idle ones are forgotten even with a daily count.
    max_callers: usize,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter::new(1_000_000)
    }
}

impl LocalLimiter {
    pub fn new(max_callers: usize) -> Self {
        LocalLimiter {
            callers: DashMap::default(),
            max_callers,
        }
    }

    /// Counts one request of `key` in every window, or none when a window is full.
    pub fn check(&self, key: &CallerKey, windows: &Windows, now: i64) -> Verdict {
        // A known caller is found without cloning its key; a new one is inserted.
        if let Some(entry) = self.callers.get(key) {
            return lock(entry.value()).check(windows, now);
        }
        let entry = self.callers.entry(key.clone()).or_insert_with(listed);
        let verdict = lock(entry.value()).check(windows, now);
        verdict
    }

    /// [`check`](Self::check) with the windows `owner` shares with its other keys, counted
    /// under its own state, and the request's credits. Locks are taken caller first, then
    /// owner; nothing takes an owner's lock and then a caller's.
    pub fn check_with(&self, counted: Counted<'_>, now: i64) -> Verdict {
        let Counted {
            caller,
            owner,
            windows,
            credits,
        } = counted;
        if owner.is_none() && credits.is_none() {
            return self.check(caller, windows, now);
        }
        let own = self.state(caller);
        let shared = owner.map(|owner| self.state(owner));
        let mut own = lock(&own);
        let mut shared = shared.as_ref().map(lock);
        let verdict = check_pair(&mut own, shared.as_deref_mut(), windows, credits, now);
        verdict
    }

    /// A caller's state, listed in the map.
    fn state(&self, key: &CallerKey) -> Shared {
        if let Some(entry) = self.callers.get(key) {
            return entry.value().clone();
        }
        let entry = self.callers.entry(key.clone()).or_insert_with(listed);
        entry.value().clone()
    }

    /// [`check`](Self::check) through the state `held` keeps for `key`: the map is read on
    /// the key's first check only, and again when the sweep had forgotten the state.
    pub fn check_held(&self, held: &Held, key: &CallerKey, windows: &Windows, now: i64) -> Verdict {
        self.check_held_with(held, Counted::alone(key, windows), now)
    }

    /// [`check_held`](Self::check_held) with the windows `owner` shares and the request's
    /// credits (see [`check_with`](Self::check_with)); the owner's state is held too.
    pub fn check_held_with(&self, held: &Held, counted: Counted<'_>, now: i64) -> Verdict {
        let Counted {
            caller: key,
            owner,
            windows,
            credits,
        } = counted;
        let state = held.own.get_or_init(|| self.state(key));
        let from_map;
        let shared = match owner {
            None => None,
            Some(owner) => match held
                .owner
                .get_or_init(|| (owner.clone(), self.state(owner)))
            {
                (held_for, state) if held_for == owner => Some((owner, state)),
                _ => {
                    from_map = self.state(owner);
                    Some((owner, &from_map))
                }
            },
        };
        let mut guard = lock(state);
        let mut shared_guard = shared.map(|(_, state)| lock(state));
        let verdict = check_pair(
            &mut guard,
            shared_guard.as_deref_mut(),
            windows,
            credits,
            now,
        );
        let owner_listed = shared_guard.take().is_none_or(|owner| owner.listed);
        let listed = guard.listed;
        drop(guard);
        // Listed after counting, so the count it just made is persisted and swept as any.
        if !listed {
            self.relist(key, state);
        }
        if let (false, Some((owner, state))) = (owner_listed, shared) {
            self.relist(owner, state);
        }
        verdict
    }

    /// Puts a held state back in the map. Locks are taken map first, then state, as the
    /// sweep takes them.
    fn relist(&self, key: &CallerKey, state: &Shared) {
        let mut entry = self
            .callers
            .entry(key.clone())
            .or_insert_with(|| state.clone());
        if !Arc::ptr_eq(entry.value(), state) {
            let other = std::mem::replace(entry.value_mut(), state.clone());
            lock(state).absorb(&lock(&other));
        }
        lock(state).listed = true;
    }

    /// Where `key` stands, counting nothing (for the headers of refused requests).
    pub fn peek(&self, key: &CallerKey, windows: &Windows, now: i64) -> Verdict {
        self.peek_with(key, None, windows, now)
    }

    /// [`peek`](Self::peek), with the windows `owner` shares read from its state.
    pub fn peek_with(
        &self,
        key: &CallerKey,
        owner: Option<&CallerKey>,
        windows: &Windows,
        now: i64,
    ) -> Verdict {
        let mut used = [0u64; MAX_WINDOWS];
        let count = windows.iter().count();
        for (index, spec) in windows.iter().enumerate() {
            let caller = match owner {
                Some(owner) if spec.kind.is_owner() => owner,
                _ => key,
            };
            if let Some(entry) = self.callers.get(caller) {
                used[index] = lock(entry.value()).count(spec.kind, spec.start(now));
            }
        }
        Verdict {
            refused_by: None,
            windows: states(windows, &used[..count], now),
            tier: windows.tier,
            fallback: false,
            credits: None,
        }
    }

    /// A caller's balance as counted here, if it has spent any.
    pub fn live_credits(&self, caller: &CallerKey) -> Option<Balance> {
        self.callers
            .get(caller)
            .and_then(|entry| lock(entry.value()).credits)
    }

    /// Balances spent from since the last call, to write back to the store.
    pub fn take_spent_credits(&self) -> Vec<(CallerKey, Balance)> {
        let mut spent = Vec::new();
        for entry in self.callers.iter() {
            let mut state = lock(entry.value());
            if let (true, Some(balance)) = (state.credits_dirty, state.credits) {
                state.credits_dirty = false;
                spent.push((entry.key().clone(), balance));
            }
        }
        spent
    }

    /// Marks balances as unsaved again (after a failed write).
    pub fn unsaved_credits(&self, callers: &[CallerKey]) {
        for caller in callers {
            if let Some(entry) = self.callers.get(caller) {
                lock(entry.value()).credits_dirty = true;
            }
        }
    }

    /// Daily counts changed since the last call, as `(caller, day start, count)`.
    pub fn take_dirty_days(&self) -> Vec<(String, i64, u64)> {
        // The data plane waits on a shard's lock while this walks the shard: under it, only
        // flags are cleared and keys cloned; the text is made after, with no lock held.
        let mut dirty = Vec::new();
        for entry in self.callers.iter() {
            let mut state = lock(entry.value());
            if !state.day_dirty {
                continue;
            }
            state.day_dirty = false;
            if let Some(day) = state.slots.iter().find(|s| s.kind.is_day()) {
                dirty.push((entry.key().clone(), day.start, day.count));
            }
        }
        dirty
            .into_iter()
            .map(|(caller, start, count)| (caller.text(), start, count))
            .collect()
    }

    /// Marks a caller's daily count as unsaved again (after a failed save).
    pub fn mark_day_dirty(&self, caller: &str) {
        if let Some(key) = CallerKey::parse(caller) {
            if let Some(entry) = self.callers.get(&key) {
                lock(entry.value()).day_dirty = true;
            }
        }
    }

    /// Puts a persisted daily count back (at start, so a restart hands out no new quota).
    pub fn restore_day(&self, key: CallerKey, day_start: i64, count: u64) {
        let kind = match key {
            CallerKey::Owner(_) => WindowKind::OwnerDay,
            _ => WindowKind::Day,
        };
        let entry = self.callers.entry(key).or_insert_with(listed);
        let mut state = lock(entry.value());
        let slot = state.slot(kind, day_start);
        slot.count = slot.count.max(count);
    }

    /// Forgets callers idle for a while whose daily count is persisted or over; above
    /// `max_callers`, every idle caller. A key still holds its state: it is only unlisted.
    pub fn sweep(&self, now: i64) {
        let crowded = self.is_crowded();
        let today = now - now.rem_euclid(DAY_MS as i64);
        self.callers.retain(|_, shared| {
            let mut state = lock(shared);
            let idle = now - state.last_seen > IDLE_MS;
            let day_over = state
                .slots
                .iter()
                .all(|s| !s.kind.is_day() || s.start < today || s.count == 0);
            // A balance not yet written back is kept whatever the crowd: it is money.
            let forget = !state.credits_dirty
                && ((crowded && now - state.last_seen > CROWDED_IDLE_MS)
                    || (idle && (crowded || (!state.day_dirty && day_over))));
            if forget {
                state.listed = false;
            }
            !forget
        });
    }

    /// More callers than the limiter keeps at ease: sweep often, and harder.
    pub fn is_crowded(&self) -> bool {
        self.callers.len() > self.max_callers
    }

    pub fn len(&self) -> usize {
        self.callers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TierKind, WindowKind};
    use super::*;
    use crate::config::{Config, Window};
    use crate::short_id::ShortId;
    use std::time::Duration;

    fn windows(route: Option<(&'static str, Window)>) -> Windows {
        let config = Config::parse(
            "rate_limits: { tiers: { api_key: { per_minute: 300, per_day: 10000 } }, burst: { requests: 100, per: 10s } }",
        )
        .unwrap();
        Windows::new(&config.rate_limits, TierKind::ApiKey, None, route)
    }

    fn key() -> CallerKey {
        CallerKey::Key(ShortId::new("key_1"))
    }

    /// Sends `n` requests spread over `[from, from + span)`; returns how many were allowed.
    fn send(limiter: &LocalLimiter, windows: &Windows, n: u64, from: i64, span: i64) -> u64 {
        (0..n)
            .filter(|i| {
                limiter
                    .check(&key(), windows, from + (*i as i64 * span) / n as i64)
                    .allowed()
            })
            .count() as u64
    }

    #[test]
    fn request_300_is_allowed_and_301_refused_within_a_minute() {
        let limiter = LocalLimiter::default();
        let w = windows(None);
        // 100 per 10 s burst: spread 300 requests over the minute's first 50 s.
        let minute = 60_000 * 1_000_000;
        assert_eq!(send(&limiter, &w, 300, minute, 50_000), 300);
        let refused = limiter.check(&key(), &w, minute + 55_000);
        assert_eq!(refused.refused_by, Some(WindowKind::Minute));
        assert_eq!(refused.tightest().unwrap().remaining(), 0);
        assert_eq!(refused.tightest().unwrap().reset_secs(), 5);
        // The last millisecond of the minute is still in it; the next one is not.
        assert!(!limiter.check(&key(), &w, minute + 59_999).allowed());
        assert!(limiter.check(&key(), &w, minute + 60_000).allowed());
    }

    #[test]
    fn the_burst_window_is_exact_at_its_edges() {
        let limiter = LocalLimiter::default();
        let w = windows(None);
        let start = 10_000 * 7;
        assert_eq!(send(&limiter, &w, 100, start, 9_999), 100);
        assert_eq!(
            limiter.check(&key(), &w, start + 9_999).refused_by,
            Some(WindowKind::Burst)
        );
        assert!(limiter.check(&key(), &w, start + 10_000).allowed());
    }

    #[test]
    fn the_daily_quota_resets_at_midnight_utc() {
        let config =
            Config::parse("rate_limits: { tiers: { api_key: { per_minute: 1000, per_day: 3 } } }")
                .unwrap();
        let w = Windows::new(&config.rate_limits, TierKind::ApiKey, None, None);
        let limiter = LocalLimiter::default();
        let midnight = crate::clock::parse_rfc3339("2026-11-23T00:00:00Z").unwrap();
        for offset in [-3_600_000, -60_000, -1_000] {
            assert!(limiter.check(&key(), &w, midnight + offset).allowed());
        }
        let refused = limiter.check(&key(), &w, midnight - 1);
        assert_eq!(refused.refused_by, Some(WindowKind::Day));
        assert_eq!(refused.tightest().unwrap().reset_secs(), 1);
        assert!(limiter.check(&key(), &w, midnight).allowed());
    }

    #[test]
    fn route_windows_are_counted_per_caller() {
        let route = Window {
            requests: 2,
            per: Duration::from_secs(60),
        };
        let w = windows(Some(("/v1/reports", route)));
        let limiter = LocalLimiter::default();
        assert!(limiter.check(&key(), &w, 0).allowed());
        assert!(limiter.check(&key(), &w, 1).allowed());
        assert_eq!(
            limiter.check(&key(), &w, 2).refused_by,
            Some(WindowKind::Route("/v1/reports"))
        );
        let other = CallerKey::Key(ShortId::new("key_2"));
        assert!(limiter.check(&other, &w, 3).allowed());
    }

    #[test]
    fn a_refused_request_counts_in_no_window() {
        let route = Window {
            requests: 1,
            per: Duration::from_secs(60),
        };
        let w = windows(Some(("reports", route)));
        let limiter = LocalLimiter::default();
        assert!(limiter.check(&key(), &w, 0).allowed());
        for t in 1..50 {
            assert!(!limiter.check(&key(), &w, t).allowed());
        }
        let peek = limiter.peek(&key(), &w, 50);
        let used: Vec<u64> = peek.windows.iter().map(|s| s.used).collect();
        assert_eq!(used, [1, 1, 1, 1], "refusals left every counter alone");
    }

    #[test]
    fn daily_counts_persist_and_restore() {
        let w = windows(None);
        let limiter = LocalLimiter::default();
        for t in 0..5 {
            limiter.check(&key(), &w, t * 1000);
        }
        let dirty = limiter.take_dirty_days();
        assert_eq!(dirty, [("k:key_1".to_string(), 0, 5)]);
        assert!(limiter.take_dirty_days().is_empty());
        let restarted = LocalLimiter::default();
        restarted.restore_day(key(), 0, 5);
        assert_eq!(restarted.peek(&key(), &w, 6000).windows[2].used, 5);
    }

    #[test]
    fn a_crowded_limiter_forgets_callers_idle_for_a_minute() {
        let w = windows(None);
        let limiter = LocalLimiter::new(2);
        for caller in ["a", "b", "c"] {
            limiter.check(&CallerKey::Key(ShortId::new(caller)), &w, 0);
        }
        assert!(limiter.is_crowded());
        limiter.sweep(30_000);
        assert_eq!(limiter.len(), 3, "not idle long enough yet");
        limiter.sweep(60_001);
        assert!(limiter.is_empty());
    }

    #[test]
    fn idle_callers_are_forgotten_once_their_day_is_saved() {
        let w = windows(None);
        let limiter = LocalLimiter::new(10);
        limiter.check(&key(), &w, 0);
        limiter.sweep(IDLE_MS + 1);
        assert_eq!(limiter.len(), 1, "its daily count is not persisted yet");
        limiter.take_dirty_days();
        limiter.sweep(IDLE_MS + 1);
        assert_eq!(limiter.len(), 1, "today's count is still needed");
        limiter.sweep(DAY_MS as i64 + IDLE_MS);
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_held_state_is_the_one_the_map_holds() {
        let w = windows(None);
        let limiter = LocalLimiter::default();
        let held = Held::new();
        for t in 0..3 {
            assert!(limiter.check_held(&held, &key(), &w, t).allowed());
        }
        assert!(limiter.check(&key(), &w, 3).allowed());
        assert!(limiter.check_held(&held, &key(), &w, 4).allowed());
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.peek(&key(), &w, 5).windows[1].used, 5);
        assert_eq!(limiter.take_dirty_days(), [("k:key_1".to_string(), 0, 5)]);
    }

    #[test]
    fn a_held_state_the_sweep_forgot_is_listed_again_on_its_next_use() {
        let w = windows(None);
        let limiter = LocalLimiter::new(10);
        let held = Held::new();
        limiter.check_held(&held, &key(), &w, 0);
        limiter.take_dirty_days();
        let tomorrow = DAY_MS as i64 + IDLE_MS;
        limiter.sweep(tomorrow);
        assert!(limiter.is_empty(), "idle, its day saved and over");
        // The key still holds its state; its next request lists it again, so its new
        // day is persisted and seen by peek.
        limiter.check_held(&held, &key(), &w, tomorrow + 1);
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.peek(&key(), &w, tomorrow + 2).windows[2].used, 1);
        assert_eq!(
            limiter.take_dirty_days(),
            [("k:key_1".to_string(), DAY_MS as i64, 1)]
        );
    }

    #[test]
    fn a_state_made_meanwhile_through_the_map_is_absorbed_not_lost() {
        let w = windows(None);
        // Crowded from its first caller: an idle one is forgotten after a minute.
        let limiter = LocalLimiter::new(0);
        let held = Held::new();
        let day = DAY_MS as i64;
        limiter.check_held(&held, &key(), &w, day);
        limiter.sweep(day + CROWDED_IDLE_MS + 1);
        assert!(limiter.is_empty());
        // Requests counted without the key (through the map) start a second state...
        let later = day + CROWDED_IDLE_MS + 10;
        for t in 0..3 {
            limiter.check(&key(), &w, later + t);
        }
        // ...and the held one, listed again, adds them to its own: none is lost.
        limiter.check_held(&held, &key(), &w, later + 5);
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.peek(&key(), &w, later + 6).windows[2].used, 5);
        assert_eq!(limiter.take_dirty_days(), [("k:key_1".to_string(), day, 5)]);
    }

    #[test]
    fn concurrent_requests_through_the_key_and_the_map_never_overshoot() {
        let config = Config::parse(
            "rate_limits: { tiers: { api_key: { per_minute: 1000, per_day: 100000 } }, burst: { requests: 100000, per: 10s } }",
        )
        .unwrap();
        let w = Windows::new(&config.rate_limits, TierKind::ApiKey, None, None);
        let limiter = LocalLimiter::default();
        let held = Held::new();
        let allowed = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (limiter, held, allowed, w) = (&limiter, &held, &allowed, &w);
                scope.spawn(move || {
                    for _ in 0..1000 {
                        let verdict = match thread % 2 {
                            0 => limiter.check_held(held, &key(), w, 1_000),
                            _ => limiter.check(&key(), w, 1_000),
                        };
                        if verdict.allowed() {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 1000);
    }

    #[test]
    fn an_owners_windows_are_shared_and_a_refusal_counts_against_neither() {
        let config = Config::parse(
            "rate_limits: { tiers: { api_key: { per_minute: 3, per_day: 100 } }, burst: { requests: 100, per: 10s } }",
        )
        .unwrap();
        let windows = Windows::new(&config.rate_limits, TierKind::ApiKey, None, None).with_owner(
            crate::config::Tier {
                per_minute: 5,
                per_day: 100,
            },
        );
        let limiter = LocalLimiter::default();
        let owner = CallerKey::Owner(ShortId::new("own_1"));
        let (a, b) = (
            CallerKey::Key(ShortId::new("key_a")),
            CallerKey::Key(ShortId::new("key_b")),
        );
        let held = Held::default();
        for t in 0..3 {
            assert!(limiter
                .check_held_with(&held, with(&a, &owner, &windows), t)
                .allowed());
        }
        // A's own minute refuses its 4th; the owner's count stays at 3.
        let refused = limiter.check_held_with(&held, with(&a, &owner, &windows), 3);
        assert_eq!(refused.refused_by, Some(WindowKind::Minute));
        assert!(limiter.check_with(with(&b, &owner, &windows), 4).allowed());
        assert!(limiter.check_with(with(&b, &owner, &windows), 5).allowed());
        let refused = limiter.check_with(with(&b, &owner, &windows), 6);
        assert_eq!(refused.refused_by, Some(WindowKind::OwnerMinute));
        // B's refusal by its owner counted nothing against B either.
        let peek = limiter.peek_with(&b, Some(&owner), &windows, 7);
        assert_eq!(used(&peek, WindowKind::Minute), 2);
        assert_eq!(used(&peek, WindowKind::OwnerMinute), 5);
        // The owner's day is persisted under its own caller key, and restored there.
        let dirty = limiter.take_dirty_days();
        assert!(dirty.contains(&("o:own_1".to_string(), 0, 5)), "{dirty:?}");
        let restarted = LocalLimiter::default();
        restarted.restore_day(owner.clone(), 0, 5);
        let peek = restarted.peek_with(&b, Some(&owner), &windows, 8);
        assert_eq!(used(&peek, WindowKind::OwnerDay), 5);
    }

    fn owned_windows() -> Windows {
        let config = Config::parse(
            "rate_limits: { tiers: { api_key: { per_minute: 100, per_day: 1000 } }, burst: { requests: 100, per: 10s } }",
        )
        .unwrap();
        Windows::new(&config.rate_limits, TierKind::ApiKey, None, None).with_owner(
            crate::config::Tier {
                per_minute: 4,
                per_day: 1000,
            },
        )
    }

    fn used(verdict: &Verdict, kind: WindowKind) -> u64 {
        verdict
            .windows
            .iter()
            .find(|w| w.spec.kind == kind)
            .unwrap()
            .used
    }

    #[test]
    fn keys_hold_their_owners_state_and_it_is_the_one_the_map_holds() {
        let windows = owned_windows();
        let limiter = LocalLimiter::default();
        let owner = CallerKey::Owner(ShortId::new("own_1"));
        let (a, b) = (
            CallerKey::Key(ShortId::new("key_a")),
            CallerKey::Key(ShortId::new("key_b")),
        );
        let (held_a, held_b) = (Held::new(), Held::new());
        for t in 0..2 {
            assert!(limiter
                .check_held_with(&held_a, with(&a, &owner, &windows), t)
                .allowed());
        }
        assert!(limiter
            .check_held_with(&held_b, with(&b, &owner, &windows), 2)
            .allowed());
        // A caller without a held state (through the map) counts in the same owner state.
        assert!(limiter.check_with(with(&b, &owner, &windows), 3).allowed());
        let refused = limiter.check_held_with(&held_a, with(&a, &owner, &windows), 4);
        assert_eq!(refused.refused_by, Some(WindowKind::OwnerMinute));
        let (of_a, of_b) = (held_a.owner.get().unwrap(), held_b.owner.get().unwrap());
        assert!(Arc::ptr_eq(&of_a.1, &of_b.1), "one state for the owner");
        assert_eq!(limiter.len(), 3, "a, b and their owner");
        let peek = limiter.peek_with(&a, Some(&owner), &windows, 5);
        assert_eq!(used(&peek, WindowKind::OwnerMinute), 4);
    }

    #[test]
    fn a_held_owner_state_the_sweep_forgot_is_listed_again_and_its_day_persisted() {
        let windows = owned_windows();
        let limiter = LocalLimiter::new(10);
        let owner = CallerKey::Owner(ShortId::new("own_1"));
        let a = CallerKey::Key(ShortId::new("key_a"));
        let held = Held::new();
        limiter.check_held_with(&held, with(&a, &owner, &windows), 0);
        limiter.take_dirty_days();
        let tomorrow = DAY_MS as i64 + IDLE_MS;
        limiter.sweep(tomorrow);
        assert!(limiter.is_empty(), "idle, their days saved and over");
        limiter.check_held_with(&held, with(&a, &owner, &windows), tomorrow + 1);
        assert_eq!(limiter.len(), 2);
        let mut dirty = limiter.take_dirty_days();
        dirty.sort();
        assert_eq!(
            dirty,
            [
                ("k:key_a".to_string(), DAY_MS as i64, 1),
                ("o:own_1".to_string(), DAY_MS as i64, 1)
            ]
        );
    }

    #[test]
    fn a_key_moved_to_another_owner_counts_under_its_new_owner() {
        let windows = owned_windows();
        let limiter = LocalLimiter::default();
        let (first, second) = (
            CallerKey::Owner(ShortId::new("own_1")),
            CallerKey::Owner(ShortId::new("own_2")),
        );
        let a = CallerKey::Key(ShortId::new("key_a"));
        let held = Held::new();
        for t in 0..4 {
            limiter.check_held_with(&held, with(&a, &first, &windows), t);
        }
        // The key holds its first owner's state; its new owner's is counted all the same.
        for t in 4..8 {
            assert!(limiter
                .check_held_with(&held, with(&a, &second, &windows), t)
                .allowed());
        }
        let refused = limiter.check_held_with(&held, with(&a, &second, &windows), 8);
        assert_eq!(refused.refused_by, Some(WindowKind::OwnerMinute));
        let peek = limiter.peek_with(&a, Some(&first), &windows, 9);
        assert_eq!(
            used(&peek, WindowKind::OwnerMinute),
            4,
            "the first owner's is untouched"
        );
        assert_eq!(used(&peek, WindowKind::Minute), 8);
    }

    fn with<'c>(caller: &'c CallerKey, owner: &'c CallerKey, windows: &'c Windows) -> Counted<'c> {
        Counted {
            caller,
            owner: Some(owner),
            windows,
            credits: None,
        }
    }

    #[test]
    fn credits_are_spent_by_cost_from_key_and_owner_and_a_refusal_spends_nothing() {
        use super::super::credits::{Credits, Interval, Refill};
        let w = windows(None);
        let limiter = LocalLimiter::default();
        let owner = CallerKey::Owner(ShortId::new("own_1"));
        let ask = CreditAsk {
            cost: 3,
            key: Some(Credits::new(10, None, 1, 0)),
            owner: Some(Credits::new(
                100,
                Some(Refill {
                    interval: Interval::Day,
                    amount: 100,
                }),
                1,
                0,
            )),
        };
        let counted = Counted {
            caller: &key(),
            owner: Some(&owner),
            windows: &w,
            credits: Some(&ask),
        };
        let key = key();
        let counted = Counted {
            caller: &key,
            ..counted
        };
        let remaining: Vec<Option<Spent>> = (0..4)
            .map(|t| limiter.check_with(counted, t).credits)
            .collect();
        assert_eq!(
            remaining,
            [
                Some(Spent::Spent { remaining: 7 }),
                Some(Spent::Spent { remaining: 4 }),
                Some(Spent::Spent { remaining: 1 }),
                Some(Spent::Exhausted { owner: false })
            ]
        );
        let refused = limiter.check_with(counted, 5);
        assert!(!refused.allowed());
        // The refusal counted in no window: three requests in the minute, not five.
        let peek = limiter.peek(&key, &w, 6);
        assert_eq!(peek.windows[1].used, 3);
        assert_eq!(limiter.live_credits(&key).unwrap().remaining, 1);
        assert_eq!(limiter.live_credits(&owner).unwrap().remaining, 91);
        let mut spent = limiter.take_spent_credits();
        spent.sort_by_key(|(caller, _)| caller.text());
        let texts: Vec<(String, u64)> = spent
            .iter()
            .map(|(caller, balance)| (caller.text(), balance.remaining))
            .collect();
        assert_eq!(
            texts,
            [("k:key_1".to_string(), 1), ("o:own_1".to_string(), 91)]
        );
        assert!(limiter.take_spent_credits().is_empty());
    }
}
