//! Runs the gate for one request with what surrounds it: the token verifier, the current
//! snapshot, the limiter, the usage counts and the decision metrics. The inline data plane
//! and forward auth both call [`Checkpoint::check`], so a request is judged, counted and
//! measured the same way whichever listener it came through.

use crate::access_log::AccessLogger;
use crate::auth::jwt::TokenVerifier;
use crate::config::{Environment, Environments, RateLimitConfig};
use crate::denial::Denial;
use crate::gate::{self, Admission, Answer, Facts, Gate};
use crate::metrics::ResolvedMetrics;
use crate::policy::permissions::Catalog;
use crate::policy::rate_limit::{headers::PolicyHeaders, CallerKey, LimitMetrics, Limiter};
use crate::reply::Limits;
use crate::routes::RouteTable;
use crate::store::sync::SnapshotHandle;
use crate::usage::UsageRecorder;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a decision reads and counts into, built once from the config.
pub struct Checkpoint {
    pub routes: RouteTable,
    pub catalog: Catalog,
    pub key_prefix: String,
    pub environments: Environments,
    pub default_environment: Environment,
    pub snapshot: Arc<SnapshotHandle>,
    pub verifier: Arc<TokenVerifier>,
    pub limiter: Arc<Limiter>,
    pub limit_metrics: LimitMetrics,
    pub rate_limits: RateLimitConfig,
    pub policy_headers: PolicyHeaders,
    pub usage: Arc<UsageRecorder>,
    /// Requests per key, hour, route and outcome.
    pub analytics: Arc<crate::analytics::Analytics>,
    pub metrics: ResolvedMetrics,
    pub access_log: Arc<AccessLogger>,
}

/// A decided request: the gate's answer, where the caller stands, and what deciding cost.
#[derive(Debug)]
pub struct Checked<'r> {
    pub answer: Answer<'r>,
    pub limits: Limits,
    /// Time spent in the gate (authentication and authorization), not in the limiter.
    pub auth_time: Duration,
    /// The normalised path, when it differs from the one sent (the one to forward).
    pub normalized: Option<String>,
}

impl Checkpoint {
    /// Decides a request as it arrived, on the data plane or through forward auth: its
    /// path normalised (one that cannot be is refused before routing), its credential
    /// headers read, then [`Checkpoint::check`].
    pub async fn judge(
        &self,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
        client_ip: IpAddr,
        client_cert: Option<&[u8; 32]>,
        now: i64,
    ) -> Checked<'_> {
        let normalized = match crate::path::normalize(path) {
            Ok(normalized) => normalized,
            Err(error) => {
                let denial = Denial::BadRequest(error.reason());
                return self.refuse(denial, client_ip, now).await;
            }
        };
        let facts = Facts {
            method,
            path: &normalized,
            api_key: headers.get("x-api-key").map(|v| v.as_bytes()),
            authorization: headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            client_ip,
            client_cert,
        };
        let mut checked = self.check(&facts, now).await;
        if normalized != path {
            checked.normalized = Some(normalized.into_owned());
        }
        checked
    }

    /// Decides a request: route and credential, the token verified when the route is
    /// known, the gate, the limiter (counting only an admitted request), the usage count.
    pub async fn check(&self, facts: &Facts<'_>, now: i64) -> Checked<'_> {
        let pending = gate::begin(&self.routes, &self.key_prefix, facts);
        let token = match pending.token() {
            Some(token) => Some(self.verifier.verify(token, now).await),
            None => None,
        };
        let deciding = Instant::now();
        let admission = {
            let snapshot = self.snapshot.load();
            let gate = Gate {
                routes: &self.routes,
                catalog: &self.catalog,
                snapshot: &snapshot,
                key_prefix: &self.key_prefix,
                environments: self.environments,
                default_environment: self.default_environment,
                stale: self.snapshot.is_stale(now),
                rate_limits: &self.rate_limits,
            };
            gate.finish(pending, token.as_ref(), now)
        };
        let auth_time = deciding.elapsed();
        self.metrics.auth_duration(auth_time.as_secs_f64());
        if let Some((method, outcome)) = admission.decision_labels() {
            self.metrics.auth_decision(method, outcome);
        }
        self.conclude(admission, now, auth_time).await
    }

    /// A request refused before the gate could route it, counted against its address.
    pub async fn refuse(&self, denial: Denial, client_ip: IpAddr, now: i64) -> Checked<'_> {
        let admission = Admission::refused(denial, &self.rate_limits, client_ip);
        self.conclude(admission, now, Duration::ZERO).await
    }

    /// Counts a request to the OAuth endpoints against its address, in the anonymous tier
    /// (which also bounds password and secret guessing).
    pub async fn count_anonymous(&self, client_ip: IpAddr, now: i64) -> Checked<'_> {
        let admission = Admission::unrouted(&self.rate_limits, client_ip);
        self.conclude(admission, now, Duration::ZERO).await
    }

    async fn conclude<'r>(
        &self,
        admission: Admission<'r>,
        now: i64,
        auth_time: Duration,
    ) -> Checked<'r> {
        let counted = &admission.counted_as;
        let verdict = if admission.counts() {
            // A key's own requests reach its limiter state through the key.
            let held = match (&counted.caller, &admission.key) {
                (CallerKey::Key(id), Some(key)) if key.id == *id => {
                    Some(self.usage.cell(&key.usage, &key.id).limits())
                }
                _ => None,
            };
            let verdict = self.limiter.check(held, counted.counted(), now).await;
            self.limit_metrics.record(&verdict);
            verdict
        } else {
            self.limiter
                .peek(
                    &counted.caller,
                    counted.owner.as_ref(),
                    &counted.windows,
                    now,
                )
                .await
        };
        let policy = self.policy_headers.get(&counted.windows);
        let answer = admission.with(verdict.clone());
        if let Some((key, outcome)) = answer.usage() {
            let exceeded = answer.exceeded();
            self.usage
                .record(&key.usage, &key.id, outcome, exceeded, now);
        }
        // Every routed request about a key, allowed or refused, once.
        if let (Some(key), Some(route)) = (&answer.key, answer.route) {
            let outcome = answer.denial().map_or("allowed", Denial::code);
            let owner = key.owner().map(|owner| &owner.id);
            self.analytics
                .record(now, &key.id, owner, route.index, outcome);
        }
        Checked {
            answer,
            limits: (verdict, policy),
            auth_time,
            normalized: None,
        }
    }
}

/// Which metric series a finished request counts in.
#[derive(Debug, Clone, Copy)]
pub enum Served<'r> {
    Unmatched,
    OAuth,
    Route(&'r crate::routes::Route),
}

/// A request once answered, for its metrics and its access-log line.
pub struct Finished<'a> {
    pub request_id: &'a str,
    pub served: Served<'a>,
    pub method: &'a http::Method,
    /// The path as the client sent it (it is redacted before it is logged).
    pub path: &'a str,
    pub status: u16,
    pub caller: Option<&'a crate::gate::Caller>,
    /// The key the request was about, admitted or refused.
    pub key_id: Option<&'a crate::short_id::ShortId>,
    /// The refusal code, or `allowed`.
    pub outcome: &'a str,
    pub client_ip: IpAddr,
    /// The upstream's name and status and when the request went to it.
    pub upstream: Option<(&'a str, u16, Instant)>,
    pub started: Instant,
    pub auth_time: Duration,
}

impl Checkpoint {
    /// Counts a finished request in `tollgate_requests_total` and writes its log line.
    pub fn finished(&self, request: &Finished<'_>) {
        let slot = match request.served {
            Served::Unmatched => crate::metrics::UNMATCHED,
            Served::OAuth => crate::metrics::OAUTH,
            Served::Route(route) => route.index + 2,
        };
        let elapsed = request.started.elapsed();
        self.metrics
            .request(slot, request.method, request.status, elapsed.as_secs_f64());
        if !self.access_log.enabled() {
            return;
        }
        let micros = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        let identity = request.caller.and_then(crate::gate::Caller::identity);
        let key_id = request.key_id.map(crate::short_id::ShortId::as_str);
        self.access_log.log(&crate::access_log::Entry {
            ts: crate::clock::now_ms(),
            request_id: request.request_id,
            route: match request.served {
                Served::Unmatched => "unmatched",
                Served::OAuth => "oauth",
                Served::Route(route) => &route.name,
            },
            method: request.method.as_str(),
            path: &crate::access_log::redact_path(request.path, &self.key_prefix),
            status: request.status,
            auth_method: request.caller.map_or("none", crate::gate::Caller::method),
            key_id: key_id.as_deref(),
            client_id: identity.as_ref().map(|identity| &*identity.client_id),
            outcome: request.outcome,
            client: request.client_ip,
            upstream: request.upstream.map(|(name, _, _)| name),
            upstream_status: request.upstream.map(|(_, status, _)| status),
            duration_us: micros(elapsed),
            auth_us: micros(request.auth_time),
            upstream_us: request
                .upstream
                .map(|(_, _, started)| micros(started.elapsed())),
        });
    }
}
