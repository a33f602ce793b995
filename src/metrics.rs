//! The Prometheus metrics of SPEC section 7, on their own registry and listener.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, OnceLock};

/// Latency buckets from 100 µs to 30 s: a gateway's own work sits at the bottom,
/// slow upstreams at the top.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub auth_decisions: IntCounterVec,
    pub auth_duration: prometheus::Histogram,
}

/// The outcomes of an admission decision: allowed, or one of its refusals.
const AUTH_OUTCOMES: [&str; 13] = [
    "allowed",
    "invalid_request",
    "missing_credentials",
    "invalid_api_key",
    "invalid_token",
    "token_expired",
    "key_expired",
    "key_revoked",
    "wrong_environment",
    "ip_not_allowed",
    "client_certificate_required",
    "insufficient_permission",
    "store_unavailable",
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests answered, by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Time from the request head to the end of the response, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric definition");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_requests_total",
                "Requests forwarded to an upstream, by upstream and response status (0 when none came).",
            ),
            &["upstream", "status"],
        )
        .expect("static metric definition");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_upstream_duration_seconds",
                "Time spent waiting on the upstream, by upstream.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "tollgate_build_info",
                "Always 1; the version label says which build runs.",
            ),
            &["version"],
        )
        .expect("static metric definition");
        let auth_decisions = IntCounterVec::new(
            Opts::new(
                "tollgate_auth_decisions_total",
                "Admission decisions, by auth method and outcome (an error code, or allowed).",
            ),
            &["method", "outcome"],
        )
        .expect("static metric definition");
        let auth_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_auth_duration_seconds",
                "Time spent deciding who is calling and whether they may.",
            )
            .buckets(vec![
                0.000_001,
                0.000_002_5,
                0.000_005,
                0.000_01,
                0.000_025,
                0.000_05,
                0.000_1,
                0.000_25,
                0.000_5,
                0.001,
                0.01,
            ]),
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Known label values are exported at 0 before first use, as Prometheus advises.
        for method in ["api_key", "oauth", "anonymous"] {
            for outcome in AUTH_OUTCOMES {
                auth_decisions.with_label_values(&[method, outcome]);
            }
        }

        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(build_info),
            Box::new(auth_decisions.clone()),
            Box::new(auth_duration.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_requests,
            upstream_duration,
            auth_decisions,
            auth_duration,
        }
    }

    /// Registers a collector defined by another module.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(collector)
            .expect("metric names are unique");
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The method label: standard methods by name, anything else as `OTHER`, so clients
/// cannot grow the label set.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Status codes are cached per label set up to this value (beyond: the `OTHER` slot 0).
const STATUSES: usize = 600;
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

fn method_index(method: &http::Method) -> usize {
    let label = method_label(method);
    METHODS
        .iter()
        .position(|m| *m == label)
        .unwrap_or(METHODS.len() - 1)
}

/// Request and upstream metrics with their label handles resolved once and cached, so
/// the request path increments a counter without hashing label strings.
pub struct ResolvedMetrics {
    metrics: Arc<Metrics>,
    /// Route labels by slot: 0 `unmatched`, 1 `oauth`, then each route in table order.
    routes: Vec<Arc<str>>,
    requests: Box<[OnceLock<IntCounter>]>,
    durations: Vec<Histogram>,
    upstreams: Vec<Arc<str>>,
    upstream_requests: Box<[OnceLock<IntCounter>]>,
    upstream_durations: Vec<Histogram>,
    auth: dashmap::DashMap<(&'static str, &'static str), IntCounter, foldhash::fast::RandomState>,
}

pub const UNMATCHED: usize = 0;
pub const OAUTH: usize = 1;

impl ResolvedMetrics {
    pub fn new(
        metrics: Arc<Metrics>,
        route_names: &[Arc<str>],
        upstream_names: &[Arc<str>],
    ) -> Self {
        let mut routes: Vec<Arc<str>> = vec![Arc::from("unmatched"), Arc::from("oauth")];
        routes.extend(route_names.iter().cloned());
        let durations = routes
            .iter()
            .map(|r| metrics.request_duration.with_label_values(&[r]))
            .collect();
        let upstream_durations = upstream_names
            .iter()
            .map(|u| metrics.upstream_duration.with_label_values(&[u]))
            .collect();
        ResolvedMetrics {
            requests: (0..routes.len() * METHODS.len() * STATUSES)
                .map(|_| OnceLock::new())
                .collect(),
            upstream_requests: (0..upstream_names.len() * STATUSES)
                .map(|_| OnceLock::new())
                .collect(),
            routes,
            durations,
            upstreams: upstream_names.to_vec(),
            upstream_durations,
            auth: dashmap::DashMap::default(),
            metrics,
        }
    }

    /// Counts a finished request of route `slot` and records its duration.
    pub fn request(&self, slot: usize, method: &http::Method, status: u16, seconds: f64) {
        let slot = slot.min(self.routes.len() - 1);
        let method = method_index(method);
        let status = usize::from(status).min(STATUSES - 1);
        let cell = &self.requests[(slot * METHODS.len() + method) * STATUSES + status];
        cell.get_or_init(|| {
            self.metrics.requests.with_label_values(&[
                &*self.routes[slot],
                METHODS[method],
                status.to_string().as_str(),
            ])
        })
        .inc();
        self.durations[slot].observe(seconds);
    }

    pub fn upstream(&self, index: usize, status: u16, seconds: f64) {
        let Some(name) = self.upstreams.get(index) else {
            return;
        };
        let status = usize::from(status).min(STATUSES - 1);
        self.upstream_requests[index * STATUSES + status]
            .get_or_init(|| {
                self.metrics
                    .upstream_requests
                    .with_label_values(&[&**name, status.to_string().as_str()])
            })
            .inc();
        self.upstream_durations[index].observe(seconds);
    }

    pub fn auth_decision(&self, method: &'static str, outcome: &'static str) {
        if let Some(counter) = self.auth.get(&(method, outcome)) {
            counter.inc();
            return;
        }
        let counter = self
            .metrics
            .auth_decisions
            .with_label_values(&[method, outcome]);
        counter.inc();
        self.auth.insert((method, outcome), counter);
    }

    pub fn auth_duration(&self, seconds: f64) {
        self.metrics.auth_duration.observe(seconds);
    }
}
