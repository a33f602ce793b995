//! Upstream pools: round robin over each upstream's targets, with TCP health checks, and
//! how each is reached: plaintext or TLS verified against the system roots or `ca_path`,
//! with the SNI of `sni` or the target's host, over HTTP/1.1 or HTTP/2.

use super::target_health::TargetCheck;
use crate::config::UpstreamConfig;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::ALPN;
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct Pool {
    balancer: Arc<LoadBalancer<RoundRobin>>,
    tls: bool,
    sni: String,
    /// The CAs an upstream certificate must chain to, when not the system's.
    ca: Option<Arc<[WrappedX509]>>,
    http2: bool,
    pub targets: usize,
    connect_timeout: Duration,
    read_timeout: Duration,
}

#[derive(Default)]
pub struct Upstreams {
    pools: HashMap<Arc<str>, Pool, foldhash::fast::RandomState>,
}

impl Upstreams {
    /// Resolves every target and prepares one health-check service per pool, for the
    /// server to run in the background.
    pub fn build(
        config: &BTreeMap<String, UpstreamConfig>,
    ) -> anyhow::Result<(Self, Vec<GenBackgroundService<LoadBalancer<RoundRobin>>>)> {
        let mut pools = HashMap::default();
        let mut services = Vec::new();
        for (name, upstream) in config {
            let mut balancer =
                LoadBalancer::try_from_iter(upstream.targets.iter().map(String::as_str)).map_err(
                    |error| anyhow::anyhow!("upstreams.{name}: cannot resolve targets: {error}"),
                )?;
            balancer.set_health_check(Box::new(TargetCheck::new(name, upstream.connect_timeout)));
            balancer.health_check_frequency = Some(HEALTH_CHECK_EVERY);
            let service = background_service(&format!("health check {name}"), balancer);
            let host = upstream.targets[0]
                .rsplit_once(':')
                .map_or("", |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            // An IP target is sent no SNI (rustls leaves it out for an address) and its
            // certificate is verified against an IP entry.
            let sni = upstream.sni.clone().unwrap_or_else(|| host.to_string());
            let ca = match &upstream.ca_path {
                Some(path) => Some(read_ca(path).map_err(|reason| {
                    anyhow::anyhow!("upstreams.{name}.ca_path: {}: {reason}", path.display())
                })?),
                None => None,
            };
            pools.insert(
                Arc::from(name.as_str()),
                Pool {
                    balancer: service.task(),
                    tls: upstream.tls,
                    sni,
                    ca,
                    http2: upstream.http2,
                    targets: upstream.targets.len(),
                    connect_timeout: upstream.connect_timeout,
                    read_timeout: upstream.read_timeout,
                },
            );
            services.push(service);
        }
        Ok((Upstreams { pools }, services))
    }

    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }
}

impl Pool {
    /// The next healthy target as a peer, or `None` when every target is down.
    pub fn peer(&self) -> Option<Box<HttpPeer>> {
        let backend: Backend = self.balancer.select(b"", self.targets.max(1) * 2)?;
        let mut peer = HttpPeer::new(backend, self.tls, self.sni.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout * 2);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.ca = self.ca.clone();
        if self.http2 {
            peer.options.alpn = ALPN::H2;
        }
        Some(Box::new(peer))
    }
}

/// The certificates of a PEM CA file, each checked to parse (pingora's own parse of a CA
/// would stop the process on one it cannot read).
fn read_ca(path: &std::path::Path) -> Result<Arc<[WrappedX509]>, String> {
    let chain = crate::tls::certificates::read_chain(path).map_err(|error| error.to_string())?;
    let mut ca = Vec::with_capacity(chain.len());
    for der in chain {
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|error| format!("a certificate cannot be parsed: {error}"))?;
        ca.push(WrappedX509::new(der.as_ref().to_vec(), parse_x509));
    }
    Ok(ca.into())
}
