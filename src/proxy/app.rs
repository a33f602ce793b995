//! The data-plane connection loop: pingora's HTTP/1 keep-alive loop, with each connection
//! wrapped in a [`HeadGuard`] that is re-armed before every request head.

use super::head_guard::{GuardSettingsRef, HeadGuard, HeadSignal};
use super::Gateway;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

/// How long a stopping process keeps answering on kept-alive connections.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds an idle kept-alive client connection stays open.
const KEEPALIVE_SECONDS: u64 = 60;

pub struct GatewayApp {
    pub proxy: Arc<HttpProxy<Gateway>>,
    pub guard: Arc<GuardSettingsRef>,
}

#[async_trait]
impl ServerApp for GatewayApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = crate::lifecycle::Connection::open();
        let signal = HeadSignal(Arc::new(AtomicU8::new(HeadSignal::QUIET)));
        let stream = HeadGuard::wrap(stream, self.guard.clone(), signal.0.clone());
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_SECONDS));
        // Pipelined requests are served in order, each checked on its own.
        session.set_pipelining_enabled(true);
        session.set_connection_user_context(Some(Box::new(signal.clone())));

        let mut reused = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            signal.rearm();
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            session.set_connection_user_context(Some(Box::new(signal.clone())));
            reused = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    /// Called once the listeners stop accepting. Idle keep-alive connections are closed
    /// only after [`LINGER`]: until then a client that sends on one gets its answer, with
    /// `Connection: close`, instead of a reset.
    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.proxy.http_cleanup().await;
    }
}
