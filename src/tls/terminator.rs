//! Ends TLS on a listener: builds the rustls server configuration from the files the
//! config names (versions from `min_version`, ALPN, client CA, certificates by SNI), swaps
//! in a new one when the files are re-read, and performs each connection's handshake with
//! a deadline, counting it. A reload that fails keeps the configuration in use.

use super::certificates::{self, CertError};
use super::client_cert::ClientSubjects;
use super::metrics::TlsMetrics;
use super::server_names::ServerNames;
use crate::config::{CertificateFiles, ServerCertificate, TlsConfig, TlsVersion};
use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::Stream;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// What a terminator reads each time it (re)loads.
#[derive(Debug, Clone)]
pub struct TlsSource {
    /// The setting it comes from, for messages: `tls` or `admin.tls`.
    pub setting: &'static str,
    pub certificates: Vec<ServerCertificate>,
    pub min_version: TlsVersion,
    pub http2: bool,
    pub client_ca_path: Option<PathBuf>,
}

impl TlsSource {
    pub fn data_plane(tls: &TlsConfig) -> TlsSource {
        TlsSource {
            setting: "tls",
            certificates: tls.certificates.clone(),
            min_version: tls.min_version,
            http2: tls.http2,
            client_ca_path: tls.client_ca_path.clone(),
        }
    }

    /// The admin listener: one certificate, HTTP/1.1 (hyper serves it), no client CA.
    pub fn admin(files: &CertificateFiles) -> TlsSource {
        TlsSource {
            setting: "admin.tls",
            certificates: vec![ServerCertificate {
                files: files.clone(),
                server_names: Vec::new(),
            }],
            min_version: TlsVersion::V1_2,
            http2: false,
            client_ca_path: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}: {source}")]
    Certificate {
        setting: &'static str,
        source: CertError,
    },
    #[error("{setting}.client_ca_path: {reason}")]
    ClientCa {
        setting: &'static str,
        reason: String,
    },
    #[error("{setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
}

/// One loaded configuration.
struct Served {
    acceptor: Acceptor,
    /// Each server name with the `notAfter` of its certificate.
    expiries: Vec<(String, i64)>,
}

pub struct Terminator {
    source: TlsSource,
    current: ArcSwap<Served>,
    metrics: Arc<TlsMetrics>,
    /// Where verified client certificates' subjects go, when a client CA is configured.
    subjects: Option<Arc<ClientSubjects>>,
}

impl Terminator {
    /// Reads every file now: a start with a bad file stops, saying which.
    pub fn new(
        source: TlsSource,
        metrics: Arc<TlsMetrics>,
        subjects: Option<Arc<ClientSubjects>>,
    ) -> Result<Terminator, TlsError> {
        let served = build(&source)?;
        Ok(Terminator {
            source,
            current: ArcSwap::from_pointee(served),
            metrics,
            subjects,
        })
    }

    pub fn setting(&self) -> &'static str {
        self.source.setting
    }

    /// Re-reads the files. On an error the configuration in use stays, and the error is
    /// returned for the log. Connections already open are not touched either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        match build(&self.source) {
            Ok(served) => {
                self.current.store(Arc::new(served));
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                Ok(())
            }
            Err(error) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                Err(error)
            }
        }
    }

    /// Each server name served, with the `notAfter` of its certificate.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        self.current.load().expiries.clone()
    }

    /// The handshake on a new connection; `None` when it failed or timed out (counted, and
    /// logged at debug: a scanner's failed handshakes are not worth a line each).
    pub async fn accept(&self, stream: Stream) -> Option<Stream> {
        use pingora::protocols::l4::stream::Stream as L4Stream;
        let served = self.current.load_full();
        let peer = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().map(|addr| addr.to_string()));
        // Listeners hand over TCP streams; the handshake takes the concrete type.
        if !stream.as_any().is::<L4Stream>() {
            tracing::error!(setting = self.source.setting, "not a TCP stream; closed");
            return None;
        }
        let tcp = stream.into_any().downcast::<L4Stream>().ok()?;
        let result =
            tokio::time::timeout(HANDSHAKE_DEADLINE, served.acceptor.tls_handshake(*tcp)).await;
        let tls = match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                self.metrics.handshake("unknown", "error");
                tracing::debug!(setting = self.source.setting, peer = peer.as_deref().unwrap_or(""), %error, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                self.metrics.handshake("unknown", "error");
                tracing::debug!(
                    setting = self.source.setting,
                    peer = peer.as_deref().unwrap_or(""),
                    "TLS handshake timed out"
                );
                return None;
            }
        };
        use pingora::protocols::Ssl;
        let version = tls
            .get_ssl_digest()
            .map_or("unknown", |digest| version_label(&digest.version));
        self.metrics.handshake(version, "ok");
        if let Some(subjects) = &self.subjects {
            if let Some(leaf) = tls.get_ssl().and_then(|ssl| ssl.peer_certificate_der()) {
                subjects.remember(leaf);
            }
        }
        Some(Box::new(tls))
    }
}

/// rustls names versions `TLSv1_2` and `TLSv1_3`; the metric says `1.2` and `1.3`.
fn version_label(version: &str) -> &'static str {
    match version {
        "TLSv1_3" | "TLSv1.3" => "1.3",
        "TLSv1_2" | "TLSv1.2" => "1.2",
        _ => "unknown",
    }
}

fn build(source: &TlsSource) -> Result<Served, TlsError> {
    let setting = source.setting;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certificates = Vec::with_capacity(source.certificates.len());
    let mut expiries = Vec::new();
    for certificate in &source.certificates {
        let loaded = certificates::load(&certificate.files, &provider)
            .map_err(|source| TlsError::Certificate { setting, source })?;
        let names = if certificate.server_names.is_empty() {
            loaded.names.clone()
        } else {
            certificate.server_names.clone()
        };
        if names.is_empty() {
            expiries.push((String::from("default"), loaded.not_after));
        }
        for name in &names {
            expiries.push((name.clone(), loaded.not_after));
        }
        certificates.push((loaded.key, names));
    }
    let names = ServerNames::new(certificates).ok_or_else(|| TlsError::Config {
        setting,
        reason: "no certificate".into(),
    })?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match source.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|error| TlsError::Config {
            setting,
            reason: error.to_string(),
        })?;
    let builder = match &source.client_ca_path {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let client_ca = |reason: String| TlsError::ClientCa { setting, reason };
            let mut roots = RootCertStore::empty();
            for certificate in
                certificates::read_chain(path).map_err(|error| client_ca(error.to_string()))?
            {
                roots
                    .add(certificate)
                    .map_err(|error| client_ca(format!("{}: {error}", path.display())))?;
            }
            // Requested from every client, verified when presented: a key bound to a
            // certificate, or an upstream that wants the subject, decides what to do
            // without one.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|error| client_ca(format!("{}: {error}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(names));
    config.alpn_protocols = if source.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Served {
        acceptor: Acceptor::from_server_config(Arc::new(config)),
        expiries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_version_names_become_the_metric_labels() {
        assert_eq!(version_label("TLSv1_3"), "1.3");
        assert_eq!(version_label("TLSv1_2"), "1.2");
        assert_eq!(version_label(""), "unknown");
    }
}
