//! Counters shared by every replica in Redis, checked and counted by one atomic script, so
//! N replicas together allow no more than the limit. Requests of concurrent callers share
//! one multiplexed connection (pipelined). When Redis is unreachable or slow, each replica
//! counts locally at limit / replicas until Redis answers again.

use super::local::LocalLimiter;
use super::{states, CallerKey, Verdict, Windows};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a request waits for Redis before the local fallback decides.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// After a failure, Redis is not asked again for this long.
const RETRY_AFTER_MS: i64 = 1_000;

/// Reads every window's count; refuses on the first full one (counting nothing); else
/// counts every window and sets each new counter to expire at its window's end.
/// KEYS: one counter per window. ARGV: per window, its limit then its end (Unix ms).
const SCRIPT: &str = r"
local used = {}
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, #KEYS do
  if used[i] >= tonumber(ARGV[2 * i - 1]) then
    return {i, unpack(used)}
  end
end
for i = 1, #KEYS do
  used[i] = redis.call('INCR', KEYS[i])
  if used[i] == 1 then
    redis.call('PEXPIREAT', KEYS[i], tonumber(ARGV[2 * i]) + 60000)
  end
end
return {0, unpack(used)}
";

pub struct RedisLimiter {
    url: String,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    fallback: LocalLimiter,
    replicas: u32,
    /// Until when (Unix ms) Redis is skipped after a failure.
    skip_until: AtomicI64,
    in_fallback: AtomicBool,
    on_fallback: Arc<dyn Fn(bool) + Send + Sync>,
}

/// The counter of one window. A caller with an owner names every counter by the owner
/// in braces, a Redis Cluster hash tag: the key's windows and the owner's, which one
/// script touches together, then live in one slot.
fn key_of(
    caller: &CallerKey,
    owner: Option<&CallerKey>,
    window: &super::WindowSpec,
    now: i64,
) -> String {
    let kind = window.kind.policy_name();
    let start = window.start(now);
    match owner {
        None => format!("tg:rl:{}:{kind}:{start}", caller.text()),
        Some(owner) if window.kind.is_owner() => {
            format!("tg:rl:{{{}}}:{kind}:{start}", owner.text())
        }
        Some(owner) => format!(
            "tg:rl:{{{}}}:{}:{kind}:{start}",
            owner.text(),
            caller.text()
        ),
    }
}

impl RedisLimiter {
    /// `on_fallback(true)` is called when the fallback takes over, `(false)` when Redis is back.
    pub fn new(url: &str, replicas: u32, on_fallback: Arc<dyn Fn(bool) + Send + Sync>) -> Self {
        RedisLimiter {
            url: url.to_string(),
            connection: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            fallback: LocalLimiter::default(),
            replicas,
            skip_until: AtomicI64::new(0),
            in_fallback: AtomicBool::new(false),
            on_fallback,
        }
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let connect = || async {
            let client = redis::Client::open(self.url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(REDIS_TIMEOUT * 5)
                .set_response_timeout(REDIS_TIMEOUT)
                .set_number_of_retries(1)
                .set_max_delay(500);
            ConnectionManager::new_with_config(client, config).await
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

    /// Runs the script; `None` means Redis could not answer in time.
    async fn shared(
        &self,
        caller: &CallerKey,
        owner: Option<&CallerKey>,
        windows: &Windows,
        now: i64,
        count: bool,
    ) -> Option<Vec<u64>> {
        if now < self.skip_until.load(Ordering::Relaxed) {
            return None;
        }
        let answer = async {
            let mut connection = self.connection().await?;
            if count {
                let mut invocation = self.script.prepare_invoke();
                for spec in windows.iter() {
                    invocation.key(key_of(caller, owner, spec, now));
                    invocation.arg(spec.limit).arg(spec.end(now));
                }
                invocation
                    .invoke_async::<Vec<u64>>(&mut connection)
                    .await
                    .ok()
            } else {
                let keys: Vec<String> = windows
                    .iter()
                    .map(|spec| key_of(caller, owner, spec, now))
                    .collect();
                let values: Vec<Option<u64>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                Some(
                    std::iter::once(0)
                        .chain(values.into_iter().map(Option::unwrap_or_default))
                        .collect(),
                )
            }
        };
        match tokio::time::timeout(REDIS_TIMEOUT, answer).await {
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

    pub async fn check(
        &self,
        caller: &CallerKey,
        owner: Option<&CallerKey>,
        windows: &Windows,
        now: i64,
    ) -> Verdict {
        match self.shared(caller, owner, windows, now, true).await {
            Some(answer) if !answer.is_empty() => {
                let used: Vec<u64> = answer[1..].to_vec();
                let refused_index = answer[0] as usize;
                let refused_by = (refused_index > 0)
                    .then(|| windows.iter().nth(refused_index - 1).map(|s| s.kind))
                    .flatten();
                Verdict {
                    refused_by,
                    windows: states(windows, &used, now),
                    tier: windows.tier,
                    fallback: false,
                }
            }
            _ => {
                let mut verdict =
                    self.fallback
                        .check_with(caller, owner, &windows.share(self.replicas), now);
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
        match self.shared(caller, owner, windows, now, false).await {
            Some(answer) => Verdict {
                refused_by: None,
                windows: states(windows, &answer[1..], now),
                tier: windows.tier,
                fallback: false,
            },
            None => {
                let mut verdict =
                    self.fallback
                        .peek_with(caller, owner, &windows.share(self.replicas), now);
                verdict.fallback = true;
                verdict
            }
        }
    }

    pub fn fallback(&self) -> &LocalLimiter {
        &self.fallback
    }
}
