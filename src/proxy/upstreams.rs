//! Upstream pools: round robin over each upstream's targets, with TCP health checks.

use super::target_health::TargetCheck;
use crate::config::UpstreamConfig;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct Pool {
    balancer: Arc<LoadBalancer<RoundRobin>>,
    tls: bool,
    sni: String,
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
                .map_or("", |(host, _)| host);
            pools.insert(
                Arc::from(name.as_str()),
                Pool {
                    balancer: service.task(),
                    tls: upstream.tls,
                    sni: host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
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
        Some(Box::new(peer))
    }
}
