//! Counters shared by every replica in Redis, checked and counted by one atomic script, so
//! N replicas together allow no more than the limit. Requests of concurrent callers share
//! one multiplexed connection (pipelined). When Redis is unreachable or slow, each replica
//! counts locally at limit / replicas until Redis answers again.

use super::credits::{period_of, Balance, CreditAsk, Credits, Spent};
use super::local::LocalLimiter;
use super::{states, CallerKey, Counted, Verdict, Windows};
use dashmap::DashMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a request waits for Redis before the local fallback decides.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// After a failure, Redis is not asked again for this long.
const RETRY_AFTER_MS: i64 = 1_000;

/// Reads every window's count; refuses on the first full one (counting nothing). Then the
/// caller's credits and its owner's: each balance is Redis's, unless the store holds a later
/// operator change (a higher generation), with a due refill applied; refuses when one is
/// below the cost (spending and counting nothing). Else spends the cost from each, counts
/// every window and sets each new counter to expire at its window's end.
/// KEYS: one counter per window, then one hash (r, p, g) per balance.
/// ARGV: the number of windows; per window its limit and its end (Unix ms); the number of
/// balances and the cost; per balance the stored remaining, period and generation, the
/// refill amount (-1: none) and the period of now.
/// Returns: the refusing window's position (0: none, -1: credits), the smaller balance left
/// (-1: no credits; on a credits refusal, the short balance's position), then each
/// window's count.
const SCRIPT: &str = r"
local w = tonumber(ARGV[1])
local used = {}
for i = 1, w do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, w do
  if used[i] >= tonumber(ARGV[2 * i]) then
    return {i, -1, unpack(used)}
  end
end
local at = 2 * w + 2
local c = tonumber(ARGV[at])
local cost = tonumber(ARGV[at + 1])
local balances = {}
for j = 1, c do
  local a = at + 2 + (j - 1) * 5
  local live = redis.call('HMGET', KEYS[w + j], 'r', 'p', 'g')
  local r, p, g = tonumber(live[1]), tonumber(live[2]), tonumber(live[3])
  local stored = tonumber(ARGV[a + 2])
  if r == nil or p == nil or g == nil or g < stored then
    r, p, g = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), stored
  end
  local refill, period = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if refill >= 0 and period > p then
    r, p = refill, period
  end
  if r < cost then
    return {-1, j, unpack(used)}
  end
  balances[j] = {r - cost, p, g}
end
local least = -1
for j = 1, c do
  local b = balances[j]
  redis.call('HSET', KEYS[w + j], 'r', string.format('%d', b[1]), 'p', string.format('%d', b[2]), 'g', string.format('%d', b[3]))
  if least < 0 or b[1] < least then
    least = b[1]
  end
end
for i = 1, w do
  used[i] = redis.call('INCR', KEYS[i])
  if used[i] == 1 then
    redis.call('PEXPIREAT', KEYS[i], tonumber(ARGV[2 * i + 1]) + 60000)
  end
end
return {0, least, unpack(used)}
";

pub struct RedisLimiter {
    url: String,
    connection: OnceCell<Shared>,
    /// `redis+cluster://`: every request's keys carry a hash tag, so one script stays in
    /// one slot.
    cluster: bool,
    script: redis::Script,
    fallback: LocalLimiter,
    replicas: u32,
    /// Until when (Unix ms) Redis is skipped after a failure.
    skip_until: AtomicI64,
    in_fallback: AtomicBool,
    on_fallback: Arc<dyn Fn(bool) + Send + Sync>,
    /// Balances this replica spent from since they were last written back, with their
    /// hashes.
    spent: DashMap<CallerKey, (String, bool)>,
}

/// The hash tag of a request's keys: its owner's when it has one (the owner's counters are
/// shared by its keys), else the caller's when it has credits. Every key one script
/// touches then shares the tag, so a Redis Cluster keeps them in one slot.
fn tag_of<'c>(counted: &Counted<'c>, cluster: bool) -> Option<&'c CallerKey> {
    match (counted.owner, counted.credits) {
        (Some(owner), _) => Some(owner),
        (None, Some(_)) => Some(counted.caller),
        (None, None) if cluster => Some(counted.caller),
        (None, None) => None,
    }
}

/// One multiplexed connection to a Redis, or to every node of a Redis Cluster (which routes
/// each command by its keys' slot and follows the cluster when slots move).
#[derive(Clone)]
enum Shared {
    One(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Shared {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Shared::One(connection) => connection.req_packed_command(cmd),
            Shared::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Shared::One(connection) => connection.req_packed_commands(cmd, offset, count),
            Shared::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Shared::One(connection) => connection.get_db(),
            Shared::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The nodes of a `redis+cluster://host1:6379,host2:6379` URL, as `redis://` URLs.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let hosts = url.strip_prefix("redis+cluster://")?;
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("redis://{host}"))
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

/// The counter of one window.
fn key_of(counted: &Counted<'_>, cluster: bool, window: &super::WindowSpec, now: i64) -> String {
    let kind = window.kind.policy_name();
    let start = window.start(now);
    match tag_of(counted, cluster) {
        None => format!("tg:rl:{}:{kind}:{start}", counted.caller.text()),
        Some(tag) if window.kind.is_owner() => {
            format!("tg:rl:{{{}}}:{kind}:{start}", tag.text())
        }
        Some(tag) => format!(
            "tg:rl:{{{}}}:{}:{kind}:{start}",
            tag.text(),
            counted.caller.text()
        ),
    }
}

/// The hash holding `caller`'s balance, under the request's tag.
fn balance_key(tag: &CallerKey, caller: &CallerKey) -> String {
    if tag == caller {
        format!("tg:cr:{{{}}}", caller.text())
    } else {
        format!("tg:cr:{{{}}}:{}", tag.text(), caller.text())
    }
}

impl RedisLimiter {
    /// `on_fallback(true)` is called when the fallback takes over, `(false)` when Redis is back.
    pub fn new(url: &str, replicas: u32, on_fallback: Arc<dyn Fn(bool) + Send + Sync>) -> Self {
        RedisLimiter {
            url: url.to_string(),
            connection: OnceCell::new(),
            cluster: cluster_nodes(url).is_some(),
            script: redis::Script::new(SCRIPT),
            fallback: LocalLimiter::default(),
            replicas,
            skip_until: AtomicI64::new(0),
            in_fallback: AtomicBool::new(false),
            on_fallback,
            spent: DashMap::new(),
        }
    }

    async fn connection(&self) -> Option<Shared> {
        let connect = || async {
            if let Some(nodes) = cluster_nodes(&self.url) {
                let client = redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(REDIS_TIMEOUT * 5)
                    .response_timeout(REDIS_TIMEOUT)
                    .retries(1)
                    .build()?;
                return client.get_async_connection().await.map(Shared::Cluster);
            }
            let client = redis::Client::open(self.url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(REDIS_TIMEOUT * 5)
                .set_response_timeout(REDIS_TIMEOUT)
                .set_number_of_retries(1)
                .set_max_delay(500);
            ConnectionManager::new_with_config(client, config)
                .await
                .map(Shared::One)
        };
        match self.connection.get_or_try_init(connect).await {
            Ok(connection) => Some(connection.clone()),
            Err(error) => {
                tracing::warn!(%error, "cannot connect to Redis; limiting locally");
                None
            }
        }
    }

    fn set_fallback(&self, active: bool) {
        if self.in_fallback.swap(active, Ordering::Relaxed) != active {
            if active {
                tracing::warn!(
                    "Redis is unreachable: each replica now limits locally at limit / replicas"
                );
            } else {
                tracing::info!("Redis is back: limits are shared again");
            }
            (self.on_fallback)(active);
        }
    }

    /// Runs `query` within the timeout; `None` (and the fallback, for a second) when Redis
    /// could not answer in time.
    async fn ask<T>(
        &self,
        now: i64,
        query: impl std::future::Future<Output = Option<T>>,
    ) -> Option<T> {
        if now < self.skip_until.load(Ordering::Relaxed) {
            return None;
        }
        match tokio::time::timeout(REDIS_TIMEOUT, query).await {
            Ok(Some(answer)) => {
                self.set_fallback(false);
                Some(answer)
            }
            _ => {
                self.skip_until
                    .store(now + RETRY_AFTER_MS, Ordering::Relaxed);
                self.set_fallback(true);
                None
            }
        }
    }

    /// The balances a request spends from, with their hashes: the caller's, then its
    /// owner's.
    fn balances(&self, counted: &Counted<'_>) -> Vec<(CallerKey, String, Credits)> {
        let (Some(ask), Some(tag)) = (counted.credits, tag_of(counted, self.cluster)) else {
            return Vec::new();
        };
        let mut balances = Vec::with_capacity(2);
        if let Some(credits) = ask.key {
            let caller = counted.caller.clone();
            balances.push((caller.clone(), balance_key(tag, &caller), credits));
        }
        if let (Some(credits), Some(owner)) = (ask.owner, counted.owner) {
            balances.push((owner.clone(), balance_key(tag, owner), credits));
        }
        balances
    }

    pub async fn check(&self, counted: Counted<'_>, now: i64) -> Verdict {
        let windows = counted.windows;
        let balances = self.balances(&counted);
        let answer = self
            .ask(now, async {
                let mut connection = self.connection().await?;
                let mut invocation = self.script.prepare_invoke();
                invocation.arg(windows.iter().count());
                for spec in windows.iter() {
                    invocation.key(key_of(&counted, self.cluster, spec, now));
                    invocation.arg(spec.limit).arg(spec.end(now));
                }
                let cost = counted.credits.map_or(0, |ask| ask.cost);
                invocation.arg(balances.len()).arg(cost);
                for (_, key, credits) in &balances {
                    invocation.key(key);
                    let refill = credits.refill.map_or(-1, |r| r.amount as i64);
                    invocation
                        .arg(credits.balance.remaining)
                        .arg(credits.balance.period)
                        .arg(credits.balance.generation)
                        .arg(refill)
                        .arg(period_of(credits.refill, now));
                }
                invocation
                    .invoke_async::<Vec<i64>>(&mut connection)
                    .await
                    .ok()
            })
            .await;
        match answer {
            Some(answer) if answer.len() >= 2 => {
                let used: Vec<u64> = answer[2..].iter().map(|&n| n.max(0) as u64).collect();
                let refused_by = usize::try_from(answer[0])
                    .ok()
                    .filter(|&i| i > 0)
                    .and_then(|i| windows.iter().nth(i - 1).map(|s| s.kind));
                let credits = match (answer[0], answer[1]) {
                    (-1, short) => Some(Spent::Exhausted {
                        owner: usize::try_from(short - 1)
                            .ok()
                            .and_then(|j| balances.get(j))
                            .is_some_and(|(caller, _, _)| Some(caller) == counted.owner),
                    }),
                    (_, left) if left >= 0 => Some(Spent::Spent {
                        remaining: left as u64,
                    }),
                    _ => None,
                };
                if matches!(credits, Some(Spent::Spent { .. })) {
                    for (caller, key, _) in balances {
                        self.spent.insert(caller, (key, true));
                    }
                }
                Verdict {
                    refused_by,
                    windows: states(windows, &used, now),
                    tier: windows.tier,
                    fallback: false,
                    credits,
                }
            }
            _ => {
                // Each replica spends at most its share of each balance while Redis is away;
                // what it spends then is not written back (Redis's balance stays the one).
                let shared = windows.share(self.replicas);
                let ask = counted.credits.map(|ask| CreditAsk {
                    key: ask.key.map(|c| c.share(self.replicas)),
                    owner: ask.owner.map(|c| c.share(self.replicas)),
                    ..*ask
                });
                let local = Counted {
                    windows: &shared,
                    credits: ask.as_ref(),
                    ..counted
                };
                let mut verdict = self.fallback.check_with(local, now);
                verdict.fallback = true;
                verdict
            }
        }
    }

    pub async fn peek(
        &self,
        caller: &CallerKey,
        owner: Option<&CallerKey>,
        windows: &Windows,
        now: i64,
    ) -> Verdict {
        let counted = Counted {
            caller,
            owner,
            windows,
            credits: None,
        };
        let answer = self
            .ask(now, async {
                let mut connection = self.connection().await?;
                let keys: Vec<String> = windows
                    .iter()
                    .map(|spec| key_of(&counted, self.cluster, spec, now))
                    .collect();
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<Vec<Option<u64>>>(&mut connection)
                    .await
                    .ok()
            })
            .await;
        match answer {
            Some(values) => {
                let used: Vec<u64> = values.into_iter().map(Option::unwrap_or_default).collect();
                Verdict {
                    refused_by: None,
                    windows: states(windows, &used, now),
                    tier: windows.tier,
                    fallback: false,
                    credits: None,
                }
            }
            None => {
                let mut verdict =
                    self.fallback
                        .peek_with(caller, owner, &windows.share(self.replicas), now);
                verdict.fallback = true;
                verdict
            }
        }
    }

    /// `caller`'s balance in Redis (`owner`: the owner of a key), if it has one.
    pub async fn live_credits(
        &self,
        caller: &CallerKey,
        owner: Option<&CallerKey>,
    ) -> Option<Balance> {
        let key = balance_key(owner.unwrap_or(caller), caller);
        self.read_balances(&[key])
            .await
            .and_then(|mut found| found.pop().flatten())
    }

    /// The balances held in `keys`, read concurrently, one command a key (so a cluster
    /// routes each to its slot). Off the request path: a slow answer is not a fallback.
    async fn read_balances(&self, keys: &[String]) -> Option<Vec<Option<Balance>>> {
        let connection = self.connection().await?;
        let mut reads = tokio::task::JoinSet::new();
        for (index, key) in keys.iter().enumerate() {
            let (mut connection, key) = (connection.clone(), key.clone());
            reads.spawn(async move {
                let row: Option<Vec<Option<i64>>> = redis::cmd("HMGET")
                    .arg(&key)
                    .arg("r")
                    .arg("p")
                    .arg("g")
                    .query_async(&mut connection)
                    .await
                    .ok();
                (index, row)
            });
        }
        let mut found = vec![None; keys.len()];
        let all = async {
            while let Some(read) = reads.join_next().await {
                let (index, row) = read.ok()?;
                found[index] = match row?.as_slice() {
                    [Some(r), Some(p), Some(g)] => Some(Balance {
                        remaining: (*r).max(0) as u64,
                        period: *p,
                        generation: *g,
                    }),
                    _ => None,
                };
            }
            Some(())
        };
        tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .ok()??;
        Some(found)
    }

    /// The balances this replica spent from since the last call, as Redis holds them now.
    pub async fn take_spent_credits(&self) -> Vec<(CallerKey, Balance)> {
        let mut spent: Vec<(CallerKey, String)> = Vec::new();
        for mut entry in self.spent.iter_mut() {
            let caller = entry.key().clone();
            let (key, dirty) = entry.value_mut();
            if *dirty {
                *dirty = false;
                spent.push((caller, key.clone()));
            }
        }
        if spent.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = spent.iter().map(|(_, key)| key.clone()).collect();
        let Some(balances) = self.read_balances(&keys).await else {
            // Redis is away: try again at the next write-back.
            let callers: Vec<CallerKey> = spent.into_iter().map(|(caller, _)| caller).collect();
            self.unsaved_credits(&callers);
            return Vec::new();
        };
        spent
            .into_iter()
            .zip(balances)
            .filter_map(|((caller, _), balance)| Some((caller, balance?)))
            .collect()
    }

    /// Marks balances as unsaved again (after a failed write): they are read again from
    /// Redis at the next write-back.
    pub fn unsaved_credits(&self, callers: &[CallerKey]) {
        for caller in callers {
            if let Some(mut entry) = self.spent.get_mut(caller) {
                entry.value_mut().1 = true;
            }
        }
    }

    pub fn fallback(&self) -> &LocalLimiter {
        &self.fallback
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TierKind, WindowKind, WindowSpec, Windows};
    use super::*;
    use crate::config::{Config, Tier};
    use crate::short_id::ShortId;

    const NOW: i64 = 1_800_000_012_345;

    fn minute() -> WindowSpec {
        WindowSpec {
            kind: WindowKind::Minute,
            limit: 10,
            period_ms: 60_000,
        }
    }

    fn windows() -> Windows {
        let config =
            Config::parse("rate_limits: { tiers: { api_key: { per_minute: 10, per_day: 100 } } }")
                .expect("a config");
        Windows::new(&config.rate_limits, TierKind::ApiKey, None, None)
    }

    #[test]
    fn a_key_without_an_owner_or_credits_keeps_its_untagged_counter_names_on_one_redis() {
        // The names of the releases before owners: a rolling upgrade keeps counting on.
        let key = CallerKey::Key(ShortId::new("key_aaaaaaaaaaaaaaaaaaaa"));
        let windows = windows();
        let alone = Counted::alone(&key, &windows);
        let start = minute().start(NOW);
        assert_eq!(
            key_of(&alone, false, &minute(), NOW),
            format!("tg:rl:k:key_aaaaaaaaaaaaaaaaaaaa:minute:{start}")
        );
        // On a cluster, the same key's names carry its own tag, so a script stays in a slot.
        assert_eq!(
            key_of(&alone, true, &minute(), NOW),
            format!(
                "tg:rl:{{k:key_aaaaaaaaaaaaaaaaaaaa}}:k:key_aaaaaaaaaaaaaaaaaaaa:minute:{start}"
            )
        );
    }

    #[test]
    fn an_owned_key_counts_under_its_owner_tag_and_the_owner_windows_are_shared() {
        let owner = CallerKey::Owner(ShortId::new("own_bbbbbbbbbbbbbbbbbbbb"));
        let a = CallerKey::Key(ShortId::new("key_aaaaaaaaaaaaaaaaaaaa"));
        let b = CallerKey::Key(ShortId::new("key_cccccccccccccccccccc"));
        let windows = windows().with_owner(Tier {
            per_minute: 100,
            per_day: 1000,
        });
        let of = |key| Counted {
            caller: key,
            owner: Some(&owner),
            windows: &windows,
            credits: None,
        };
        let owner_minute = WindowSpec {
            kind: WindowKind::OwnerMinute,
            ..minute()
        };
        let start = minute().start(NOW);
        for cluster in [false, true] {
            assert_eq!(
                key_of(&of(&a), cluster, &minute(), NOW),
                format!("tg:rl:{{o:own_bbbbbbbbbbbbbbbbbbbb}}:k:key_aaaaaaaaaaaaaaaaaaaa:minute:{start}")
            );
            let shared = key_of(&of(&a), cluster, &owner_minute, NOW);
            assert_eq!(
                shared,
                format!("tg:rl:{{o:own_bbbbbbbbbbbbbbbbbbbb}}:owner_minute:{start}")
            );
            assert_eq!(key_of(&of(&b), cluster, &owner_minute, NOW), shared);
        }
        assert_eq!(
            balance_key(&owner, &a),
            "tg:cr:{o:own_bbbbbbbbbbbbbbbbbbbb}:k:key_aaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(balance_key(&a, &a), "tg:cr:{k:key_aaaaaaaaaaaaaaaaaaaa}");
    }
}
