//! What one request carries between the proxy phases, grouped by what it is about: the
//! connection, the admission, the caller's limits, the upstream attempt and the timing.

use crate::denial::Denial;
use crate::gate::Caller;
use crate::lifecycle::IN_FLIGHT;
use crate::reply::Limits;
use crate::store::snapshot::Grace;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct RequestCtx {
    pub request_id: String,
    pub connection: ConnectionFacts,
    pub admission: Admitted,
    /// Where the caller stands in its windows, for the response headers.
    pub limits: Option<Limits>,
    pub upstream: UpstreamAttempt,
    pub timing: Timing,
}

/// Where the request came from.
pub struct ConnectionFacts {
    /// The client's address, through `trusted_proxies`.
    pub client_ip: IpAddr,
    /// The head arrived behind another request's, unseen by the head guard.
    pub pipelined: bool,
    /// The connection is TLS.
    pub https: bool,
    /// `Strict-Transport-Security` for the answer: on HTTPS, when configured.
    pub hsts: Option<http::HeaderValue>,
    /// A client certificate the handshake verified.
    pub client_cert: Option<ClientCert>,
}

/// A verified client certificate, as the upstream is told of it.
pub struct ClientCert {
    /// RFC 4514; `None` if it could not be read.
    pub subject: Option<std::sync::Arc<str>>,
    /// SHA-256 of the leaf.
    pub fingerprint: [u8; 32],
}

/// What the gate decided, as far as later phases need it.
#[derive(Default)]
pub struct Admitted {
    /// The route's index in the table.
    pub route: Option<usize>,
    /// Answered by the authorization server, not routed.
    pub oauth_endpoint: bool,
    pub caller: Option<Caller>,
    /// The environment of the caller's key: which of the route's upstreams it goes to.
    pub environment: Option<crate::config::Environment>,
    /// The key the request was about, admitted or refused, for the log.
    pub key_id: Option<crate::short_id::ShortId>,
    /// The key's previous secret was used, in its grace period: answers say until when.
    pub grace: Option<Grace>,
    /// The code of the refusal sent, for the access log; `None` while allowed.
    pub outcome: Option<&'static str>,
}

#[derive(Default)]
pub struct UpstreamAttempt {
    /// The normalised path, when it differs from what the client sent.
    pub forward_path: Option<String>,
    pub started: Option<Instant>,
    pub status: u16,
    pub connect_attempts: usize,
    /// A refusal decided after `request_filter` (no healthy target), for `fail_to_proxy`.
    pub denial: Option<Denial>,
}

pub struct Timing {
    pub started: Instant,
    /// Time spent in the gate.
    pub auth: Duration,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        RequestCtx {
            request_id: String::new(),
            connection: ConnectionFacts {
                client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                pipelined: false,
                https: false,
                hsts: None,
                client_cert: None,
            },
            admission: Admitted::default(),
            limits: None,
            upstream: UpstreamAttempt::default(),
            timing: Timing {
                started: Instant::now(),
                auth: Duration::ZERO,
            },
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new()
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}
