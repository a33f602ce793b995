//! The pingora glue: one `ProxyHttp` whose phases gather a request's facts, hand them to
//! the checkpoint (the gate, the limiter, the usage counts), and apply its answer to the
//! request and the response. Nothing here decides.

pub mod app;
mod context;
pub mod edge;
pub mod head_guard;
pub mod head_syntax;
mod oauth_bridge;
mod respond;
mod target_health;
mod upstream_headers;
pub mod upstreams;

pub use context::RequestCtx;

use crate::checkpoint::{Checked, Checkpoint, Finished, Served};
use crate::clock;
use crate::denial::Denial;
use crate::gate::Decision;
use crate::oauth;
use crate::policy::client_addr::client_ip;
use async_trait::async_trait;
use head_syntax::{check_decoded_head, check_head, HeadLimits};
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;
use upstream_headers::Forwarding;
use upstreams::Upstreams;

/// Everything the data plane reads, built once from the config.
pub struct Gateway {
    pub checkpoint: Arc<Checkpoint>,
    pub upstreams: Upstreams,
    pub trusted_proxies: Vec<IpNet>,
    /// The endpoints tollgate answers itself on the data plane: OAuth, and leak reports
    /// when they are on.
    pub oauth: axum::Router,
    /// `POST /secret-scanning/github` is answered (`leak_reports.github_public_keys_path`).
    pub leak_reports: bool,
    pub edge: edge::Edge,
}

/// The request id of SPEC section 4 (see [`crate::reply::request_id`]).
pub fn request_id(header: &RequestHeader) -> String {
    crate::reply::request_id(header.headers.get("x-request-id").map(|v| v.as_bytes()))
}

impl Gateway {
    /// The OAuth endpoints: counted against the caller's address in the anonymous tier,
    /// then answered by the authorization server.
    async fn serve_oauth(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.admission.oauth_endpoint = true;
        let now = clock::now_ms();
        let checked = self
            .checkpoint
            .count_anonymous(ctx.connection.client_ip, now)
            .await;
        ctx.limits = Some(checked.limits);
        match checked.answer.decision {
            Decision::Refuse(denial) => respond::refuse(session, ctx, &denial).await?,
            Decision::Forward => oauth_bridge::serve(session, ctx, &self.oauth).await?,
        }
        Ok(true)
    }

    fn route(&self, ctx: &RequestCtx) -> Option<&crate::routes::Route> {
        self.checkpoint.routes.get(ctx.admission.route?)
    }

    /// The route's upstream for the caller's environment.
    fn upstream_name(&self, ctx: &RequestCtx) -> Option<&str> {
        self.route(ctx)
            .map(|route| &**route.upstream_for(ctx.admission.environment).0)
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
        RequestCtx::new()
    }

    /// Called once the head is parsed, with what the connection loop handed over.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        context: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Ok(signal) = context.downcast::<head_guard::HeadSignal>() {
            ctx.connection.pipelined = signal.head_parsed();
        }
    }

    /// The pipeline: the head (when the guard did not see it), the client, the OAuth
    /// endpoints, then the checkpoint's answer, forwarded or refused.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        self.edge.observe(session, ctx);
        if session.is_http2() {
            let request = session.req_header();
            let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
            let headers = request
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()));
            let checked = check_decoded_head(
                request.method.as_str(),
                target,
                headers,
                &HeadLimits::default(),
            );
            if let Err(denial) = checked {
                respond::refuse(session, ctx, &denial).await?;
                return Ok(true);
            }
        }
        if ctx.connection.pipelined {
            if let Err(denial) = check_head(&raw_head(session), &HeadLimits::default()) {
                session.set_keepalive(None);
                respond::refuse(session, ctx, &denial).await?;
                return Ok(true);
            }
        }
        let forwarded_for = session.req_header().headers.get_all("x-forwarded-for");
        let forwarded_for = forwarded_for.iter().map(|v| v.as_bytes());
        ctx.connection.client_ip =
            client_ip(peer_ip(session), forwarded_for, &self.trusted_proxies);
        let path = session.req_header().uri.path();
        if oauth::PATHS.contains(&path) || (self.leak_reports && path == crate::leak_reports::PATH)
        {
            return self.serve_oauth(session, ctx).await;
        }
        let request = session.req_header();
        let (method, path) = (&request.method, request.uri.path());
        let Checked {
            answer,
            limits,
            auth_time,
            normalized,
        } = (self.checkpoint)
            .judge(
                method,
                path,
                &request.headers,
                ctx.connection.client_ip,
                ctx.connection
                    .client_cert
                    .as_ref()
                    .map(|cert| &cert.fingerprint),
                clock::now_ms(),
            )
            .await;
        ctx.timing.auth = auth_time;
        ctx.upstream.forward_path = normalized;
        ctx.limits = Some(limits);
        ctx.admission.route = answer.route.map(|route| route.index);
        ctx.admission.key_id = answer.key.as_ref().map(|key| key.id.clone());
        ctx.admission.grace = answer.grace;
        ctx.admission.environment = answer.caller.as_ref().and_then(|c| c.environment());
        ctx.admission.caller = answer.caller;
        match answer.decision {
            Decision::Forward => Ok(false),
            Decision::Refuse(denial) => {
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
        ctx.upstream.started.get_or_insert_with(Instant::now);
        peer.ok_or_else(|| {
            ctx.upstream.denial = Some(Denial::UpstreamUnavailable);
            Error::explain(
                ErrorType::ConnectNoRoute,
                "no healthy target in the upstream",
            )
        })
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut error: Box<Error>,
    ) -> Box<Error> {
        if error.etype() == &ErrorType::TLSHandshakeFailure {
            // A certificate the upstream cannot prove (unknown CA, wrong name, expired) is
            // a setup error, said once per failed connection with rustls' reason.
            tracing::warn!(
                upstream = self.upstream_name(ctx).unwrap_or(""),
                target = %peer.address(),
                sni = %peer.sni(),
                reason = %error,
                "TLS to the upstream failed"
            );
        }
        // Try each target of the pool at most once.
        ctx.upstream.connect_attempts += 1;
        let targets = self
            .upstream_name(ctx)
            .and_then(|name| self.upstreams.get(name))
            .map_or(1, |pool| pool.targets);
        if ctx.upstream.connect_attempts >= targets {
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
        let forwarding = Forwarding {
            caller: ctx.admission.caller.as_ref(),
            request_id: &ctx.request_id,
            peer: peer_ip(session),
            client_ip: ctx.connection.client_ip,
            trusted_proxies: &self.trusted_proxies,
            path: ctx.upstream.forward_path.take(),
            https: ctx.connection.https,
            client_cert: ctx.connection.client_cert.as_ref(),
        };
        upstream_headers::rewrite(upstream, forwarding)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream.status = upstream_response.status.as_u16();
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        respond::annotate(response, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let denial = ctx.upstream.denial.take().or_else(|| classify(error));
        let error_code = match denial {
            Some(denial) if session.response_written().is_none() => {
                if ctx.request_id.is_empty() {
                    ctx.request_id = request_id(session.req_header());
                }
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
        let route = self.route(ctx);
        let upstream = match (ctx.upstream.started, route) {
            (Some(started), Some(route)) => {
                let status = ctx.upstream.status;
                let seconds = started.elapsed().as_secs_f64();
                let (name, index) = route.upstream_for(ctx.admission.environment);
                self.checkpoint.metrics.upstream(index, status, seconds);
                Some((&**name, status, started))
            }
            _ => None,
        };
        let request = session.req_header();
        self.checkpoint.finished(&Finished {
            request_id: &ctx.request_id,
            served: match route {
                _ if ctx.admission.oauth_endpoint => Served::OAuth,
                Some(route) => Served::Route(route),
                None => Served::Unmatched,
            },
            method: &request.method,
            path: request.uri.path(),
            status,
            caller: ctx.admission.caller.as_ref(),
            key_id: ctx.admission.key_id.as_ref(),
            outcome: ctx.admission.outcome.unwrap_or("allowed"),
            client_ip: ctx.connection.client_ip,
            upstream,
            started: ctx.timing.started,
            auth_time: ctx.timing.auth,
        });
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Failures are counted in metrics and answered with a code; pingora's own error
        // lines would repeat them without the request id.
        true
    }
}
