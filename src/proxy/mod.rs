//! The pingora glue: one `ProxyHttp` whose phases gather facts, hand them to the pure
//! decision, and apply its answer to the request and response.

pub mod app;
mod framing;
pub mod head_guard;
mod head_syntax;
mod oauth_bridge;
mod respond;
mod target_health;
pub mod upstreams;

use crate::auth::jwt::{TokenVerifier, VerifiedToken};
use crate::clock;
use crate::config::Environment;
use crate::config::RateLimitConfig;
use crate::decision::{outcome_of, Caller, Decision, Gatekeeper, RequestFacts};
use crate::denial::Denial;
use crate::lifecycle::IN_FLIGHT;
use crate::metrics::ResolvedMetrics;
use crate::oauth;
use crate::path::normalize;
use crate::policy::client_addr::{client_ip, is_trusted};
use crate::policy::permissions::Catalog;
use crate::policy::rate_limit::{
    headers as limit_headers, CallerKey, LimitMetrics, Limiter, TierKind, Verdict, WindowKind,
    Windows,
};
use crate::routes::Route;
use crate::routes::RouteTable;
use crate::store::snapshot::Grace;
use crate::store::sync::SnapshotHandle;
use crate::usage::{Outcome, UsageRecorder};
use async_trait::async_trait;
use head_guard::HeadLimits;
use head_syntax::check_head;
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use upstreams::Upstreams;

/// Everything the data plane reads, built once from the config.
pub struct Gateway {
    pub routes: RouteTable,
    pub catalog: Catalog,
    pub upstreams: Upstreams,
    pub trusted_proxies: Vec<IpNet>,
    pub key_prefix: String,
    pub environment: Environment,
    pub snapshot: Arc<SnapshotHandle>,
    pub usage: Arc<UsageRecorder>,
    pub verifier: Arc<TokenVerifier>,
    pub limiter: Arc<Limiter>,
    pub limit_metrics: LimitMetrics,
    pub rate_limits: RateLimitConfig,
    pub policy_headers: limit_headers::PolicyHeaders,
    pub oauth: axum::Router,
    pub access_log: Arc<crate::access_log::AccessLogger>,
    pub metrics: ResolvedMetrics,
}

/// Client headers that could pass for the gateway's own: `x-tollgate-*` (also spelled
/// with underscores, which some upstream frameworks read as dashes), the credential and the
/// client address.
fn spoofable(name: &str) -> bool {
    const PREFIX: &[u8] = b"x-tollgate-";
    let bytes = name.as_bytes();
    let same = |a: u8, b: u8| a == b || (a == b'_' && b == b'-');
    let tollgate =
        bytes.len() >= PREFIX.len() && bytes.iter().zip(PREFIX).all(|(a, b)| same(*a, *b));
    let other = |target: &str| {
        bytes.len() == target.len()
            && bytes
                .iter()
                .zip(target.as_bytes())
                .all(|(a, b)| same(*a, *b))
    };
    tollgate || other("x-api-key") || other("x-real-ip")
}

/// The `Connection` tokens a client may send through: close, keep-alive and upgrade.
fn hop_by_hop_tokens(value: &[u8]) -> String {
    value
        .split(|b| *b == b',')
        .map(|token| String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase())
        .filter(|token| matches!(token.as_str(), "close" | "keep-alive" | "upgrade"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bearer that is not a key is an access token to verify (when it is the only credential).
fn token_to_verify<'r>(request: &'r RequestHeader, key_prefix: &str) -> Option<&'r [u8]> {
    if request.headers.contains_key("x-api-key") {
        return None;
    }
    let authorization = request.headers.get(http::header::AUTHORIZATION)?;
    let token = crate::decision::bearer_token(authorization.as_bytes())?;
    (!crate::auth::api_key::looks_like_key(token, key_prefix)).then_some(token)
}

/// Per-request state carried between phases.
pub struct RequestCtx {
    started: Instant,
    pub request_id: String,
    route: Option<usize>,
    client_ip: IpAddr,
    /// The normalised path, when it differs from what the client sent.
    forward_path: Option<String>,
    caller: Option<Caller>,
    /// A refusal decided after `request_filter` (no healthy target), for `fail_to_proxy`.
    denial: Option<Denial>,
    upstream_started: Option<Instant>,
    upstream_status: u16,
    connect_attempts: usize,
    /// Answered by the authorization server, not routed.
    oauth_endpoint: bool,
    /// Whom the request counts against, decided with the admission.
    limit_scope: Option<(CallerKey, Windows)>,
    /// The rate-limit verdict, for the response headers.
    pub limits: Option<(Verdict, http::HeaderValue)>,
    /// The key a refusal was about (its address, expiry, permissions...), for the log.
    refused_key: Option<Arc<str>>,
    /// The head arrived behind another request's, unseen by the head guard.
    pipelined: bool,
    /// The code of the refusal sent, for the access log.
    outcome: Option<&'static str>,
    /// Time spent deciding (authentication, authorization, limits).
    auth_time: std::time::Duration,
    /// The key's previous secret was used, in its grace period: answers say until when.
    pub grace: Option<Grace>,
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client-sent `X-Request-Id` is kept when it is 1–128 of `A-Za-z0-9._:-`.
pub fn request_id(header: &RequestHeader) -> String {
    match header.headers.get("x-request-id") {
        Some(value)
            if (1..=128).contains(&value.len())
                && value.as_bytes().iter().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                }) =>
        {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

impl Gateway {
    /// Gathers the facts of a request and decides. On success the context knows the
    /// route and caller; on refusal it knows the route, if one matched.
    fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        token: Option<&Result<Arc<VerifiedToken>, Denial>>,
        now: i64,
    ) -> Result<(), Denial> {
        let request = session.req_header();
        framing::check_framing(request, || raw_head(session))?;
        let path =
            normalize(request.uri.path()).map_err(|error| Denial::BadRequest(error.reason()))?;
        let facts = RequestFacts {
            method: &request.method,
            path: &path,
            api_key: request.headers.get("x-api-key").map(|v| v.as_bytes()),
            authorization: request
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            client_ip: ctx.client_ip,
            token,
        };
        let snapshot = self.snapshot.load();
        let deciding = Instant::now();
        let gatekeeper = Gatekeeper {
            routes: &self.routes,
            catalog: &self.catalog,
            snapshot: &snapshot,
            key_prefix: &self.key_prefix,
            environment: self.environment,
            stale: self.snapshot.is_stale(now),
            now,
        };
        let decision = gatekeeper.decide(&facts);
        ctx.auth_time = deciding.elapsed();
        self.metrics.auth_duration(ctx.auth_time.as_secs_f64());
        if path != request.uri.path() {
            ctx.forward_path = Some(path.into_owned());
        }
        match decision {
            Decision::Forward {
                route,
                caller,
                grace,
            } => {
                ctx.grace = grace;
                self.metrics.auth_decision(caller.method(), "allowed");
                ctx.limit_scope = Some(self.scope_of(&caller, Some(route), ctx.client_ip));
                ctx.route = Some(route.index);
                ctx.caller = Some(caller);
                Ok(())
            }
            Decision::Refuse {
                route,
                denial,
                method,
                key,
                grace,
            } => {
                ctx.grace = grace;
                if route.is_some() {
                    self.metrics.auth_decision(method, denial.code());
                }
                ctx.refused_key = key.as_ref().map(|credential| credential.id.clone());
                if let (Some(credential), Some(outcome)) = (&key, outcome_of(&denial)) {
                    self.usage
                        .record(&credential.usage, &credential.id, outcome, now);
                }
                ctx.limit_scope = Some(match &key {
                    Some(credential) => {
                        self.scope_of(&Caller::ApiKey(credential.clone()), route, ctx.client_ip)
                    }
                    None => self.anonymous_scope(ctx.client_ip, route),
                });
                ctx.route = route.map(|route| route.index);
                Err(denial)
            }
        }
    }

    /// Whom a request counts against, and which windows apply.
    fn scope_of(
        &self,
        caller: &Caller,
        route: Option<&Route>,
        client_ip: IpAddr,
    ) -> (CallerKey, Windows) {
        let route_window = route.and_then(|r| r.rate_limit);
        let (key, tier, own) = match caller {
            Caller::Anonymous => return self.anonymous_scope(client_ip, route),
            Caller::ApiKey(credential) => (
                CallerKey::Key(credential.id.clone()),
                TierKind::ApiKey,
                credential.rate_limit,
            ),
            // The tier is who the caller is, not how it presented itself: a key's
            // client-credentials token counts as the key, in the key's tier.
            Caller::OAuth(oauth) => match &oauth.credential {
                Some(credential) => (
                    CallerKey::Key(credential.id.clone()),
                    TierKind::ApiKey,
                    credential.rate_limit,
                ),
                None => (
                    CallerKey::Subject(oauth.token.subject.clone()),
                    TierKind::OAuth,
                    None,
                ),
            },
        };
        (
            key,
            Windows::new(&self.rate_limits, tier, own, route_window),
        )
    }

    /// Counts an admitted request in its windows; the refusal when one of them is full.
    async fn count(
        &self,
        ctx: &mut RequestCtx,
        caller: &CallerKey,
        windows: &Windows,
        now: i64,
    ) -> Option<Denial> {
        let verdict = self.limiter.check(caller, windows, now).await;
        self.limit_metrics.record(&verdict);
        let refused = verdict.refused_by.map(|window| match window {
            WindowKind::Day => Denial::QuotaExceeded,
            _ => Denial::RateLimited,
        });
        ctx.limits = Some((verdict, self.policy_headers.get(windows)));
        refused
    }

    /// Where a refused request's caller stands, for its headers, counting nothing.
    async fn peek(&self, ctx: &mut RequestCtx, caller: &CallerKey, windows: &Windows, now: i64) {
        let verdict = self.limiter.peek(caller, windows, now).await;
        ctx.limits = Some((verdict, self.policy_headers.get(windows)));
    }

    /// The OAuth endpoints: framing checked as everywhere, counted against the caller's
    /// address in the anonymous tier (which also bounds password and secret guessing),
    /// then answered by the authorization server.
    async fn serve_oauth(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let now = clock::now_ms();
        let (caller, windows) = self.anonymous_scope(ctx.client_ip, None);
        let refusal = match framing::check_framing(session.req_header(), || raw_head(session)) {
            Ok(()) => self.count(ctx, &caller, &windows, now).await,
            Err(denial) => {
                self.peek(ctx, &caller, &windows, now).await;
                Some(denial)
            }
        };
        match refusal {
            Some(denial) => {
                ctx.outcome = Some(denial.code());
                respond::refuse(session, ctx, &denial).await?;
            }
            None => oauth_bridge::serve(session, ctx, &self.oauth).await?,
        }
        Ok(true)
    }

    fn anonymous_scope(&self, client_ip: IpAddr, route: Option<&Route>) -> (CallerKey, Windows) {
        let route_window = route.and_then(|r| r.rate_limit);
        (
            CallerKey::anonymous(client_ip),
            Windows::new(&self.rate_limits, TierKind::Anonymous, None, route_window),
        )
    }

    fn log_access(&self, session: &Session, ctx: &RequestCtx, status: u16) {
        let request = session.req_header();
        let identity = ctx.caller.as_ref().and_then(Caller::identity);
        let upstream = self
            .upstream_name(ctx)
            .filter(|_| ctx.upstream_started.is_some());
        let millis = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        self.access_log.log(&crate::access_log::Entry {
            ts: clock::rfc3339_millis(clock::now_ms()),
            request_id: &ctx.request_id,
            route: self.route_name(ctx),
            method: request.method.as_str(),
            path: &crate::access_log::redact_path(request.uri.path(), &self.key_prefix),
            status,
            auth_method: ctx.caller.as_ref().map_or("none", Caller::method),
            key_id: ctx
                .caller
                .as_ref()
                .and_then(Caller::key)
                .map(|k| &*k.id)
                .or(ctx.refused_key.as_deref()),
            client_id: identity.map(|(_, client_id, _)| client_id),
            outcome: ctx.outcome.unwrap_or("allowed"),
            client: ctx.client_ip.to_string(),
            upstream,
            upstream_status: upstream.map(|_| ctx.upstream_status),
            duration_ms: millis(ctx.started.elapsed()),
            auth_ms: millis(ctx.auth_time),
            upstream_ms: ctx
                .upstream_started
                .map(|started| millis(started.elapsed())),
        });
    }

    fn route_name(&self, ctx: &RequestCtx) -> &str {
        if ctx.oauth_endpoint {
            return "oauth";
        }
        ctx.route
            .and_then(|index| self.routes.get(index))
            .map_or("unmatched", |route| &route.name)
    }

    fn upstream_name(&self, ctx: &RequestCtx) -> Option<&str> {
        let route = self.routes.get(ctx.route?)?;
        Some(&route.upstream)
    }
}

fn peer_ip(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|addr| addr.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip())
}

fn raw_head(session: &Session) -> Vec<u8> {
    session
        .as_downstream()
        .as_http1()
        .map(|h1| h1.get_headers_raw_bytes().to_vec())
        .unwrap_or_default()
}

/// Maps a proxying error to the refusal the client sees; `None` when the client is gone.
fn classify(error: &Error) -> Option<Denial> {
    use ErrorType::*;
    match (error.esource(), error.etype()) {
        (
            _,
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure,
        ) => Some(Denial::UpstreamUnavailable),
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => Some(Denial::UpstreamTimeout),
        (ErrorSource::Upstream, _) => Some(Denial::UpstreamUnavailable),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
        (ErrorSource::Downstream, _) => Some(Denial::BadRequest("the request could not be read")),
        _ => Some(Denial::Internal),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            route: None,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            forward_path: None,
            caller: None,
            denial: None,
            upstream_started: None,
            upstream_status: 0,
            connect_attempts: 0,
            oauth_endpoint: false,
            pipelined: false,
            refused_key: None,
            limit_scope: None,
            limits: None,
            outcome: None,
            auth_time: std::time::Duration::ZERO,
            grace: None,
        }
    }

    /// Called once the head is parsed, with what the connection loop handed over.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        context: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Ok(signal) = context.downcast::<head_guard::HeadSignal>() {
            ctx.pipelined = signal.head_parsed();
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        // A pipelined head never passed the head guard: its syntax and limits are checked
        // on pingora's copy of it.
        if ctx.pipelined {
            if let Err(denial) = check_head(&raw_head(session), &HeadLimits::default()) {
                ctx.outcome = Some(denial.code());
                session.set_keepalive(None);
                respond::refuse(session, ctx, &denial).await?;
                return Ok(true);
            }
        }
        let request = session.req_header();
        ctx.client_ip = client_ip(
            peer_ip(session),
            request
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes()),
            &self.trusted_proxies,
        );
        if oauth::PATHS.contains(&request.uri.path()) {
            ctx.oauth_endpoint = true;
            return self.serve_oauth(session, ctx).await;
        }
        let now = clock::now_ms();
        let token = match token_to_verify(request, &self.key_prefix) {
            Some(token) => Some(self.verifier.verify(token, now).await),
            None => None,
        };
        let admitted = self.admit(session, ctx, token.as_ref(), now);
        let (caller_key, windows) = ctx
            .limit_scope
            .take()
            .unwrap_or_else(|| self.anonymous_scope(ctx.client_ip, None));
        let refusal = match admitted {
            Ok(()) => {
                let refused = self.count(ctx, &caller_key, &windows, now).await;
                // Usage counts the request once, by its final outcome.
                if let Some(credential) = ctx.caller.as_ref().and_then(Caller::key) {
                    let outcome = refused.as_ref().map_or(Outcome::Allowed, |denial| {
                        outcome_of(denial).unwrap_or(Outcome::RateLimited)
                    });
                    self.usage
                        .record(&credential.usage, &credential.id, outcome, now);
                }
                refused
            }
            Err(denial) => {
                self.peek(ctx, &caller_key, &windows, now).await;
                Some(denial)
            }
        };
        match refusal {
            None => Ok(false),
            Some(denial) => {
                ctx.outcome = Some(denial.code());
                respond::refuse(session, ctx, &denial).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let peer = self
            .upstream_name(ctx)
            .and_then(|name| self.upstreams.get(name))
            .and_then(|pool| pool.peer());
        ctx.upstream_started.get_or_insert_with(Instant::now);
        peer.ok_or_else(|| {
            ctx.denial = Some(Denial::UpstreamUnavailable);
            Error::explain(
                ErrorType::ConnectNoRoute,
                "no healthy target in the upstream",
            )
        })
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut error: Box<Error>,
    ) -> Box<Error> {
        // Try each target of the pool at most once.
        ctx.connect_attempts += 1;
        let targets = self
            .upstream_name(ctx)
            .and_then(|name| self.upstreams.get(name))
            .map_or(1, |pool| pool.targets);
        if ctx.connect_attempts >= targets {
            error.set_retry(false);
        }
        error
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream.headers.keys().any(|name| spoofable(name.as_str())) {
            let doomed: Vec<http::HeaderName> = upstream
                .headers
                .keys()
                .filter(|name| spoofable(name.as_str()))
                .cloned()
                .collect();
            for name in doomed {
                upstream.remove_header(&name);
            }
        }
        // A client may list header names in Connection to have them dropped as hop-by-hop;
        // only the standard tokens are kept, so it can never remove the identity headers.
        if let Some(connection) = upstream.headers.get(http::header::CONNECTION) {
            let kept = hop_by_hop_tokens(connection.as_bytes());
            if kept.len() != connection.len() {
                match kept.is_empty() {
                    true => {
                        upstream.remove_header(&http::header::CONNECTION);
                    }
                    false => upstream.insert_header(http::header::CONNECTION, kept)?,
                }
            }
        }
        if upstream
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| crate::decision::bearer_token(value.as_bytes()))
            .is_some()
        {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
        let caller = ctx.caller.as_ref().map_or("anonymous", Caller::method);
        upstream.insert_header("x-tollgate-auth-method", caller)?;
        if let Some((subject, client_id, permissions)) =
            ctx.caller.as_ref().and_then(Caller::identity)
        {
            upstream.insert_header("x-tollgate-subject", subject)?;
            upstream.insert_header("x-tollgate-client-id", client_id)?;
            upstream.insert_header("x-tollgate-permissions", permissions)?;
        }
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;

        let peer = peer_ip(session);
        let forwarded_for = match upstream.headers.get("x-forwarded-for") {
            Some(existing) if is_trusted(peer, &self.trusted_proxies) => {
                format!("{}, {peer}", String::from_utf8_lossy(existing.as_bytes()))
            }
            _ => peer.to_string(),
        };
        upstream.insert_header("x-forwarded-for", forwarded_for)?;
        upstream.insert_header("x-real-ip", ctx.client_ip.to_string())?;
        if !is_trusted(peer, &self.trusted_proxies) {
            if upstream.headers.contains_key("forwarded") {
                upstream.remove_header("forwarded");
            }
            upstream.insert_header("x-forwarded-proto", "http")?;
        } else if !upstream.headers.contains_key("x-forwarded-proto") {
            upstream.insert_header("x-forwarded-proto", "http")?;
        }
        if let Some(path) = ctx.forward_path.take() {
            let uri = match upstream.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            let uri = uri.parse().map_err(|_| {
                Error::explain(ErrorType::InvalidHTTPHeader, "normalised path is not a URI")
            })?;
            upstream.set_uri(uri);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = upstream_response.status.as_u16();
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some((verdict, policy)) = &ctx.limits {
            for (name, value) in limit_headers::headers(verdict, policy) {
                response.insert_header(name, value)?;
            }
        }
        if let Some(grace) = &ctx.grace {
            respond::deprecation(response, grace)?;
        }
        response.insert_header("x-request-id", ctx.request_id.as_str())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let denial = ctx.denial.take().or_else(|| classify(error));
        let error_code = match denial {
            Some(denial) if session.response_written().is_none() => {
                if ctx.request_id.is_empty() {
                    ctx.request_id = request_id(session.req_header());
                }
                ctx.outcome = Some(denial.code());
                // The connection is not reused after a failed proxy attempt; saying so in
                // the answer keeps a client from sending its next request into the close.
                session.set_keepalive(None);
                if let Err(write_error) = respond::refuse(session, ctx, &denial).await {
                    tracing::debug!(%write_error, "could not send the error response");
                }
                denial.status()
            }
            Some(denial) => denial.status(),
            None => 0,
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map_or(0, |response| response.status.as_u16());
        let slot = match ctx.route {
            _ if ctx.oauth_endpoint => crate::metrics::OAUTH,
            Some(index) => index + 2,
            None => crate::metrics::UNMATCHED,
        };
        let method = &session.req_header().method;
        self.metrics
            .request(slot, method, status, ctx.started.elapsed().as_secs_f64());
        if let (Some(started), Some(route)) = (
            ctx.upstream_started,
            ctx.route.and_then(|i| self.routes.get(i)),
        ) {
            self.metrics.upstream(
                route.upstream_index,
                ctx.upstream_status,
                started.elapsed().as_secs_f64(),
            );
        }
        if self.access_log.enabled() {
            self.log_access(session, ctx, status);
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Failures are counted in metrics and answered with a code; pingora's own error
        // lines would repeat them without the request id.
        true
    }
}
