//! Whether each upstream target answers: pingora's TCP check, reported in one short line
//! per change (the upstream, the target and the cause) instead of pingora's own, which
//! prints the whole peer configuration.

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct TargetCheck {
    upstream: String,
    inner: Box<TcpHealthCheck>,
    /// The last failure of each target, for the line that reports it unhealthy.
    causes: Mutex<HashMap<String, String>>,
}

impl TargetCheck {
    pub fn new(upstream: &str, connect_timeout: Duration) -> Self {
        let mut inner = TcpHealthCheck::new();
        inner.peer_template.options.connection_timeout = Some(connect_timeout);
        TargetCheck {
            upstream: upstream.to_string(),
            inner,
            causes: Mutex::new(HashMap::new()),
        }
    }
}

/// The cause of a failed check in a few words: what failed, and the system's reason.
pub fn cause_of(error: &pingora::Error) -> String {
    let root = error.root_cause().to_string();
    let kind = error.etype().as_str();
    if root.is_empty() || root == kind {
        kind.to_string()
    } else {
        format!("{kind}: {root}")
    }
}

#[async_trait]
impl HealthCheck for TargetCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let checked = self.inner.check(target).await;
        if let Err(error) = &checked {
            if let Ok(mut causes) = self.causes.lock() {
                causes.insert(target.addr.to_string(), cause_of(error));
            }
        }
        checked
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let address = target.addr.to_string();
        if healthy {
            tracing::info!(upstream = %self.upstream, target = %address, "upstream target is healthy");
            return;
        }
        let cause = self
            .causes
            .lock()
            .ok()
            .and_then(|causes| causes.get(&address).cloned())
            .unwrap_or_else(|| "the check failed".into());
        tracing::warn!(upstream = %self.upstream, target = %address, %cause, "upstream target is unhealthy");
    }

    fn backend_summary(&self, target: &Backend) -> String {
        target.addr.to_string()
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}
