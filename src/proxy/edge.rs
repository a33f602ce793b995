//! What the connection a request came on adds to it: whether it is HTTPS (for
//! `X-Forwarded-Proto` and HSTS), a verified client certificate (SPEC section 13), and the
//! count of requests by protocol.

use super::context::{ClientCert, RequestCtx};
use crate::metrics::Metrics;
use crate::tls::client_cert::ClientSubjects;
use http::HeaderValue;
use pingora::proxy::Session;
use prometheus::{IntCounter, IntCounterVec, Opts};
use std::sync::Arc;

pub struct Edge {
    /// `Strict-Transport-Security`, for answers on HTTPS.
    pub hsts: Option<HeaderValue>,
    /// Set when client certificates are requested.
    pub client_subjects: Option<Arc<ClientSubjects>>,
    http1: IntCounter,
    h2: IntCounter,
}

impl Edge {
    pub fn new(
        hsts: Option<HeaderValue>,
        client_subjects: Option<Arc<ClientSubjects>>,
        metrics: &Metrics,
    ) -> Edge {
        let by_protocol = IntCounterVec::new(
            Opts::new(
                "tollgate_http_requests_by_protocol_total",
                "Data-plane requests by the protocol they arrived on (http/1.1 or h2).",
            ),
            &["protocol"],
        )
        .expect("static metric definition");
        metrics.register(Box::new(by_protocol.clone()));
        Edge {
            hsts,
            client_subjects,
            http1: by_protocol.with_label_values(&["http/1.1"]),
            h2: by_protocol.with_label_values(&["h2"]),
        }
    }

    /// Records the connection's facts on the request, and counts it.
    pub fn observe(&self, session: &Session, ctx: &mut RequestCtx) {
        match session.is_http2() {
            true => self.h2.inc(),
            false => self.http1.inc(),
        }
        let Some(tls) = session
            .digest()
            .and_then(|digest| digest.ssl_digest.as_ref())
        else {
            return;
        };
        ctx.connection.https = true;
        ctx.connection.hsts = self.hsts.clone();
        if let Some(subjects) = &self.client_subjects {
            // Only a certificate the handshake verified against the client CA gets here.
            if let Ok(fingerprint) = <[u8; 32]>::try_from(&tls.cert_digest[..]) {
                ctx.connection.client_cert = Some(ClientCert {
                    subject: subjects.subject(&fingerprint),
                    fingerprint,
                });
            }
        }
    }
}
