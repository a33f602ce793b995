//! The TLS metrics of SPEC section 13: handshakes by version and result, reloads by result,
//! and the seconds left on each server name's certificate.

use crate::metrics::Metrics;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};

pub struct TlsMetrics {
    handshakes_ok_12: IntCounter,
    handshakes_ok_13: IntCounter,
    handshakes: IntCounterVec,
    pub reloads: IntCounterVec,
    pub expiry: IntGaugeVec,
}

impl TlsMetrics {
    pub fn new(metrics: &Metrics) -> TlsMetrics {
        let handshakes = IntCounterVec::new(
            Opts::new(
                "tollgate_tls_handshakes_total",
                "TLS handshakes on the client-facing listeners, by negotiated version (unknown when none was) and result.",
            ),
            &["version", "result"],
        )
        .expect("static metric definition");
        let reloads = IntCounterVec::new(
            Opts::new(
                "tollgate_tls_reloads_total",
                "Certificate reloads (SIGHUP), by result; a failed one keeps the certificates in use.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let expiry = IntGaugeVec::new(
            Opts::new(
                "tollgate_certificate_expiry_seconds",
                "Seconds until the notAfter of the certificate served for each server name.",
            ),
            &["server_name"],
        )
        .expect("static metric definition");
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        handshakes.with_label_values(&["unknown", "error"]);
        metrics.register(Box::new(handshakes.clone()));
        metrics.register(Box::new(reloads.clone()));
        metrics.register(Box::new(expiry.clone()));
        TlsMetrics {
            handshakes_ok_12: handshakes.with_label_values(&["1.2", "ok"]),
            handshakes_ok_13: handshakes.with_label_values(&["1.3", "ok"]),
            handshakes,
            reloads,
            expiry,
        }
    }

    pub fn handshake(&self, version: &str, result: &str) {
        match (version, result) {
            ("1.3", "ok") => self.handshakes_ok_13.inc(),
            ("1.2", "ok") => self.handshakes_ok_12.inc(),
            _ => self.handshakes.with_label_values(&[version, result]).inc(),
        }
    }

    /// Sets the expiry gauge from `(server_name, notAfter)` pairs, dropping names no
    /// longer served.
    pub fn set_expiries(&self, expiries: &[(String, i64)], now: i64) {
        self.expiry.reset();
        for (name, not_after) in expiries {
            self.expiry
                .with_label_values(&[name.as_str()])
                .set(not_after - now);
        }
    }
}
