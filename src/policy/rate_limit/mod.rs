//! Rate limits and daily quotas (fixed windows aligned to the epoch, so a day is a UTC
//! day): which windows apply to a caller, the verdict, and the headers that describe it.
//! Counting happens in [`local`] (in-process) or [`redis`] (shared by every replica).

pub mod credits;
pub mod headers;
pub mod local;
pub mod redis;

use crate::config::{RateLimitConfig, Tier, Window};
use crate::short_id::ShortId;
use std::net::IpAddr;
use std::sync::Arc;

pub const MINUTE_MS: u64 = 60_000;
pub const DAY_MS: u64 = 86_400_000;
/// Burst, minute, day, a route's, and an owner's minute and day.
pub const MAX_WINDOWS: usize = 6;

/// Whom a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// A key, directly or through its client-credentials tokens.
    Key(ShortId),
    /// A user of the authorization-code flow, or a subject of an external issuer.
    Subject(Arc<str>),
    /// Anonymous callers, by client address.
    Address(IpAddr),
    /// An owner, whose windows all its keys share (SPEC 15).
    Owner(ShortId),
}

impl CallerKey {
    /// An anonymous caller: its IPv4 address, or the /64 of its IPv6 address (one host
    /// usually holds a whole /64, so a flood of its addresses counts as one caller).
    pub fn anonymous(ip: IpAddr) -> CallerKey {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                CallerKey::Address(IpAddr::V6(std::net::Ipv6Addr::from(network)))
            }
            IpAddr::V6(v6) => CallerKey::Address(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)),
            IpAddr::V4(_) => CallerKey::Address(ip),
        }
    }

    /// A stable text form, for Redis keys and the persisted daily counts.
    pub fn text(&self) -> String {
        match self {
            CallerKey::Key(id) => format!("k:{id}"),
            CallerKey::Subject(sub) => format!("s:{sub}"),
            CallerKey::Address(ip) => format!("a:{ip}"),
            CallerKey::Owner(id) => format!("o:{id}"),
        }
    }

    pub fn parse(text: &str) -> Option<CallerKey> {
        let (kind, rest) = text.split_once(':')?;
        match kind {
            "k" => Some(CallerKey::Key(ShortId::new(rest))),
            "s" => Some(CallerKey::Subject(Arc::from(rest))),
            "a" => rest.parse().ok().map(CallerKey::Address),
            "o" => Some(CallerKey::Owner(ShortId::new(rest))),
            _ => None,
        }
    }
}

/// Which limit a window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Burst,
    Minute,
    Day,
    /// A route's own safeguard, by the route's name (its path prefix when it has none),
    /// so its counters and its name in the headers stay put when routes are reordered.
    Route(&'static str),
    /// The windows an owner's keys share.
    OwnerMinute,
    OwnerDay,
}

/// The name of a route's window, kept for the life of the process: route names come
/// from the config, a few per process, so each is stored once and shared.
pub fn route_window(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut names) = NAMES.lock() else {
        return "route";
    };
    if let Some(found) = names.iter().find(|known| **known == name) {
        return found;
    }
    let kept: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(kept);
    kept
}

impl WindowKind {
    pub fn label(self) -> &'static str {
        match self {
            WindowKind::Burst => "burst",
            WindowKind::Minute => "minute",
            WindowKind::Day => "day",
            WindowKind::Route(_) => "route",
            WindowKind::OwnerMinute => "owner_minute",
            WindowKind::OwnerDay => "owner_day",
        }
    }

    /// Counted under the caller's owner, not the caller.
    pub fn is_owner(self) -> bool {
        matches!(self, WindowKind::OwnerMinute | WindowKind::OwnerDay)
    }

    /// A daily quota (persisted, and refused as `quota_exceeded`).
    pub fn is_day(self) -> bool {
        matches!(self, WindowKind::Day | WindowKind::OwnerDay)
    }

    /// The IETF policy name.
    pub fn policy_name(self) -> &'static str {
        match self {
            WindowKind::Route(name) => name,
            other => other.label(),
        }
    }
}

/// The tier label of the metric: how the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TierKind {
    Anonymous,
    ApiKey,
    OAuth,
}

impl TierKind {
    pub fn label(self) -> &'static str {
        match self {
            TierKind::Anonymous => "anonymous",
            TierKind::ApiKey => "api_key",
            TierKind::OAuth => "oauth",
        }
    }
}

/// One window to check: at most `limit` requests per `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub limit: u64,
    pub period_ms: u64,
}

impl WindowSpec {
    /// The start of the window holding `now`.
    pub fn start(&self, now: i64) -> i64 {
        now - now.rem_euclid(self.period_ms as i64)
    }

    pub fn end(&self, now: i64) -> i64 {
        self.start(now) + self.period_ms as i64
    }
}

/// The windows of one request: the tier's (or the key's own) minute and day, the burst
/// window, the route's safeguard, and the minute and day its owner's keys share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Windows {
    specs: [Option<WindowSpec>; MAX_WINDOWS],
    pub tier: TierKind,
}

impl Windows {
    pub fn new(
        config: &RateLimitConfig,
        tier: TierKind,
        own: Option<Tier>,
        route: Option<(&'static str, Window)>,
    ) -> Windows {
        let base = own.unwrap_or(match tier {
            TierKind::Anonymous => config.tiers.anonymous,
            TierKind::ApiKey => config.tiers.api_key,
            TierKind::OAuth => config.tiers.oauth,
        });
        let window = |kind, window: Window| WindowSpec {
            kind,
            limit: window.requests,
            period_ms: window.per.as_millis() as u64,
        };
        Windows {
            specs: [
                Some(window(WindowKind::Burst, config.burst)),
                Some(WindowSpec {
                    kind: WindowKind::Minute,
                    limit: base.per_minute,
                    period_ms: MINUTE_MS,
                }),
                Some(WindowSpec {
                    kind: WindowKind::Day,
                    limit: base.per_day,
                    period_ms: DAY_MS,
                }),
                route.map(|(name, limit)| window(WindowKind::Route(name), limit)),
                None,
                None,
            ],
            tier,
        }
    }

    /// The same windows with those an owner's keys share.
    pub fn with_owner(mut self, owner: Tier) -> Windows {
        self.specs[4] = Some(WindowSpec {
            kind: WindowKind::OwnerMinute,
            limit: owner.per_minute,
            period_ms: MINUTE_MS,
        });
        self.specs[5] = Some(WindowSpec {
            kind: WindowKind::OwnerDay,
            limit: owner.per_day,
            period_ms: DAY_MS,
        });
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &WindowSpec> {
        self.specs.iter().flatten()
    }

    /// The same windows at `1/replicas` of their limits (at least 1): each replica's share
    /// while the shared counters are unreachable.
    pub fn share(&self, replicas: u32) -> Windows {
        let mut shared = *self;
        for spec in shared.specs.iter_mut().flatten() {
            spec.limit = (spec.limit / u64::from(replicas.max(1))).max(1);
        }
        shared
    }
}

/// Whom one request is counted against: the caller, its owner (whose windows and credits
/// the caller's key shares), the windows, and what it costs in credits.
#[derive(Debug, Clone, Copy)]
pub struct Counted<'c> {
    pub caller: &'c CallerKey,
    pub owner: Option<&'c CallerKey>,
    pub windows: &'c Windows,
    pub credits: Option<&'c credits::CreditAsk>,
}

impl<'c> Counted<'c> {
    /// A caller counted in `windows` alone: no owner, no credits.
    pub fn alone(caller: &'c CallerKey, windows: &'c Windows) -> Counted<'c> {
        Counted {
            caller,
            owner: None,
            windows,
            credits: None,
        }
    }
}

/// The counters, in process or shared through Redis.
pub enum Limiter {
    Local(local::LocalLimiter),
    Redis(Box<redis::RedisLimiter>),
}

impl Limiter {
    /// Counts one request of `caller`, and of its `owner` in the owner's windows, in one
    /// step: both or neither. `held` is the state a key keeps of its in-process counters,
    /// reached without a map lookup; the shared counters live in Redis.
    pub async fn check(
        &self,
        held: Option<&local::Held>,
        counted: Counted<'_>,
        now: i64,
    ) -> Verdict {
        match (self, held) {
            (Limiter::Local(local), Some(held)) => local.check_held_with(held, counted, now),
            (Limiter::Local(local), None) => local.check_with(counted, now),
            (Limiter::Redis(shared), _) => shared.check(counted, now).await,
        }
    }

    /// A caller's balance as counted now (for an operator's change), without spending;
    /// `owner` is the owner of a key caller.
    pub async fn live_credits(
        &self,
        caller: &CallerKey,
        owner: Option<&CallerKey>,
    ) -> Option<credits::Balance> {
        match self {
            Limiter::Local(local) => local.live_credits(caller),
            Limiter::Redis(shared) => shared.live_credits(caller, owner).await,
        }
    }

    /// Balances spent since the last call, to write back to the store.
    pub async fn take_spent_credits(&self) -> Vec<(CallerKey, credits::Balance)> {
        match self {
            Limiter::Local(local) => local.take_spent_credits(),
            Limiter::Redis(shared) => shared.take_spent_credits().await,
        }
    }

    /// Marks balances as unsaved again (after a failed write).
    pub fn unsaved_credits(&self, callers: &[CallerKey]) {
        match self {
            Limiter::Local(local) => local.unsaved_credits(callers),
            Limiter::Redis(shared) => shared.unsaved_credits(callers),
        }
    }

    pub async fn peek(
        &self,
        caller: &CallerKey,
        owner: Option<&CallerKey>,
        windows: &Windows,
        now: i64,
    ) -> Verdict {
        match self {
            Limiter::Local(local) => local.peek_with(caller, owner, windows, now),
            Limiter::Redis(shared) => shared.peek(caller, owner, windows, now).await,
        }
    }

    /// The in-process counters whose daily counts are persisted (the local backend only;
    /// Redis keeps the shared ones).
    pub fn persisted(&self) -> Option<&local::LocalLimiter> {
        match self {
            Limiter::Local(local) => Some(local),
            Limiter::Redis(_) => None,
        }
    }

    /// Every in-process counter map, for sweeping idle callers.
    pub fn local(&self) -> &local::LocalLimiter {
        match self {
            Limiter::Local(local) => local,
            Limiter::Redis(shared) => shared.fallback(),
        }
    }
}

/// `tollgate_rate_limit_decisions_total` with every label set resolved once, and the
/// fallback metrics.
pub struct LimitMetrics {
    decisions: Vec<prometheus::IntCounter>,
    pub fallback_decisions: prometheus::IntCounter,
    pub fallback_active: prometheus::IntGauge,
}

const TIERS: [TierKind; 3] = [TierKind::Anonymous, TierKind::ApiKey, TierKind::OAuth];
const WINDOW_LABELS: [&str; MAX_WINDOWS] = [
    "burst",
    "minute",
    "day",
    "route",
    "owner_minute",
    "owner_day",
];

impl LimitMetrics {
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        let vec = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tollgate_rate_limit_decisions_total",
                "Rate-limit decisions per window: allowed, or limited by that window.",
            ),
            &["tier", "window", "result"],
        )
        .expect("static metric definition");
        let mut decisions = Vec::new();
        for tier in TIERS {
            for window in WINDOW_LABELS {
                for result in ["allowed", "limited"] {
                    decisions.push(vec.with_label_values(&[tier.label(), window, result]));
                }
            }
        }
        let fallback_decisions = prometheus::IntCounter::new(
            "tollgate_rate_limit_fallback_total",
            "Rate-limit decisions made locally because Redis was unreachable or slow.",
        )
        .expect("static metric definition");
        let fallback_active = prometheus::IntGauge::new(
            "tollgate_rate_limit_fallback_active",
            "1 while this replica limits locally at limit / replicas because Redis is unreachable.",
        )
        .expect("static metric definition");
        metrics.register(Box::new(vec));
        metrics.register(Box::new(fallback_decisions.clone()));
        metrics.register(Box::new(fallback_active.clone()));
        LimitMetrics {
            decisions,
            fallback_decisions,
            fallback_active,
        }
    }

    fn counter(
        &self,
        tier: TierKind,
        window: WindowKind,
        limited: bool,
    ) -> &prometheus::IntCounter {
        let tier = tier as usize;
        let window = match window {
            WindowKind::Burst => 0,
            WindowKind::Minute => 1,
            WindowKind::Day => 2,
            WindowKind::Route(_) => 3,
            WindowKind::OwnerMinute => 4,
            WindowKind::OwnerDay => 5,
        };
        &self.decisions[(tier * MAX_WINDOWS + window) * 2 + usize::from(limited)]
    }

    /// Counts every window as allowed, or the refusing window as limited. A request
    /// refused for its credits was counted in no window.
    pub fn record(&self, verdict: &Verdict) {
        match verdict.refused_by {
            Some(window) => self.counter(verdict.tier, window, true).inc(),
            None if !verdict.allowed() => {}
            None => {
                for state in verdict.windows.iter() {
                    self.counter(verdict.tier, state.spec.kind, false).inc();
                }
            }
        }
        if verdict.fallback {
            self.fallback_decisions.inc();
        }
    }
}

/// Where one window stands after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub spec: WindowSpec,
    /// Requests counted in the current window, this one included when allowed.
    pub used: u64,
    /// Milliseconds until the window resets.
    pub reset_ms: i64,
}

impl WindowState {
    pub fn remaining(&self) -> u64 {
        self.spec.limit.saturating_sub(self.used)
    }

    /// Whole seconds until reset, rounded up.
    pub fn reset_secs(&self) -> i64 {
        (self.reset_ms + 999) / 1000
    }
}

/// The outcome of counting a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The window that refused the request, if one did. Nothing was counted then.
    pub refused_by: Option<WindowKind>,
    pub windows: WindowStates,
    pub tier: TierKind,
    /// Decided by the local fallback because the shared counters were unreachable.
    pub fallback: bool,
    /// What was spent from the caller's credits, when it has them and the windows allowed
    /// the request. `Exhausted` refuses it: then nothing was counted in any window.
    pub credits: Option<credits::Spent>,
}

impl Verdict {
    /// Every window allowed it and its credits (if any) paid for it.
    pub fn allowed(&self) -> bool {
        self.refused_by.is_none() && !self.credits.is_some_and(credits::Spent::exhausted)
    }

    /// The window with the fewest requests left (the refusing one, when refused).
    pub fn tightest(&self) -> Option<&WindowState> {
        match self.refused_by {
            Some(kind) => self.windows.iter().find(|w| w.spec.kind == kind),
            None => self
                .windows
                .iter()
                .min_by_key(|w| (w.remaining(), std::cmp::Reverse(w.reset_ms))),
        }
    }
}

/// Counts the windows against their limits, given each window's `used` count: refused by the first full one
/// (counting nothing), or every window counted. The pure core shared by both backends.
pub fn decide(windows: &Windows, used: &mut [u64]) -> Option<WindowKind> {
    let refused = windows
        .iter()
        .zip(used.iter())
        .find(|(spec, used)| **used >= spec.limit)
        .map(|(spec, _)| spec.kind);
    if refused.is_none() {
        for count in used.iter_mut() {
            *count += 1;
        }
    }
    refused
}

pub fn states(windows: &Windows, used: &[u64], now: i64) -> WindowStates {
    let mut states = WindowStates::default();
    for (spec, used) in windows.iter().zip(used) {
        states.items[states.len] = WindowState {
            spec: *spec,
            used: *used,
            reset_ms: spec.end(now) - now,
        };
        states.len += 1;
    }
    states
}

/// The (at most six) windows of a verdict, kept inline: no allocation per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStates {
    items: [WindowState; MAX_WINDOWS],
    len: usize,
}

impl Default for WindowStates {
    fn default() -> Self {
        let empty = WindowState {
            spec: WindowSpec {
                kind: WindowKind::Burst,
                limit: 0,
                period_ms: 1,
            },
            used: 0,
            reset_ms: 0,
        };
        WindowStates {
            items: [empty; MAX_WINDOWS],
            len: 0,
        }
    }
}

impl std::ops::Deref for WindowStates {
    type Target = [WindowState];

    fn deref(&self) -> &[WindowState] {
        &self.items[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ipv6_callers_count_by_their_64() {
        let a = CallerKey::anonymous("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = CallerKey::anonymous("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = CallerKey::anonymous("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            CallerKey::anonymous("::ffff:203.0.113.9".parse().unwrap()),
            CallerKey::anonymous("203.0.113.9".parse().unwrap())
        );
    }
    use crate::config::Config;

    #[test]
    fn windows_come_from_the_tier_or_the_keys_own_limit() {
        let config = Config::parse("rate_limits: { tiers: { api_key: { per_minute: 5, per_day: 50 } }, burst: { requests: 3, per: 10s } }").unwrap();
        let windows = Windows::new(&config.rate_limits, TierKind::ApiKey, None, None);
        let limits: Vec<(WindowKind, u64)> = windows.iter().map(|w| (w.kind, w.limit)).collect();
        assert_eq!(
            limits,
            [
                (WindowKind::Burst, 3),
                (WindowKind::Minute, 5),
                (WindowKind::Day, 50)
            ]
        );
        let own = Windows::new(
            &config.rate_limits,
            TierKind::ApiKey,
            Some(Tier {
                per_minute: 1000,
                per_day: 2,
            }),
            None,
        );
        assert_eq!(own.iter().nth(2).map(|w| w.limit), Some(2));
        let shared = windows.share(2);
        let limits: Vec<u64> = shared.iter().map(|w| w.limit).collect();
        assert_eq!(limits, [1, 2, 25]);
    }

    #[test]
    fn days_are_utc_days() {
        let spec = WindowSpec {
            kind: WindowKind::Day,
            limit: 1,
            period_ms: DAY_MS,
        };
        let noon = crate::clock::parse_rfc3339("2026-11-22T12:00:00Z").unwrap();
        assert_eq!(
            crate::clock::rfc3339(spec.start(noon)),
            "2026-11-22T00:00:00Z"
        );
        assert_eq!(
            crate::clock::rfc3339(spec.end(noon)),
            "2026-11-23T00:00:00Z"
        );
    }

    #[test]
    fn caller_keys_round_trip_as_text() {
        for key in [
            CallerKey::Key(ShortId::new("key_1")),
            CallerKey::Subject(Arc::from("usr_1")),
            CallerKey::Address("2001:db8::1".parse().unwrap()),
            CallerKey::Owner(ShortId::new("own_1")),
        ] {
            assert_eq!(CallerKey::parse(&key.text()), Some(key));
        }
    }
}
