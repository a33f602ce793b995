//! `SIGHUP` re-reads every certificate, key and CA file (and nothing else), and the expiry
//! gauge is kept current between reloads. Installed even without TLS, so a `SIGHUP` sent
//! by habit never stops the process.

use super::metrics::TlsMetrics;
use super::Terminator;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// How often the seconds left on each certificate are recomputed.
const EXPIRY_EVERY: Duration = Duration::from_secs(30);

pub struct CertificateReloader {
    pub terminators: Vec<Arc<Terminator>>,
    pub metrics: Arc<TlsMetrics>,
}

impl CertificateReloader {
    /// Reloads each terminator; a failure is logged naming the file and the rest go on.
    pub fn reload_all(&self) {
        if self.terminators.is_empty() {
            tracing::info!("SIGHUP: no TLS listener, nothing to reload");
        }
        for terminator in &self.terminators {
            match terminator.reload() {
                Ok(()) => {
                    tracing::info!(setting = terminator.setting(), "certificates reloaded")
                }
                Err(error) => tracing::error!(
                    %error,
                    "certificate reload failed; the certificates in use stay"
                ),
            }
        }
        self.refresh_expiry();
    }

    pub fn refresh_expiry(&self) {
        let expiries: Vec<(String, i64)> = self
            .terminators
            .iter()
            .flat_map(|terminator| terminator.expiries())
            .collect();
        self.metrics
            .set_expiries(&expiries, crate::clock::now_ms() / 1000);
    }
}

#[async_trait]
impl BackgroundService for CertificateReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGHUP: certificates will not reload");
                return;
            }
        };
        self.refresh_expiry();
        loop {
            tokio::select! {
                _ = hangups.recv() => self.reload_all(),
                _ = tokio::time::sleep(EXPIRY_EVERY) => self.refresh_expiry(),
                _ = shutdown.changed() => break,
            }
        }
    }
}
