//! The Prometheus metrics of SPEC section 7, on their own registry and listener.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

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
