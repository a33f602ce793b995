//! The data-plane connection loop: TLS ended first on an HTTPS listener, then HTTP/2 (by
//! ALPN, or by its preface on plaintext) handed to pingora's HTTP/2 server, and HTTP/1
//! served by pingora's keep-alive loop with each connection wrapped in a [`HeadGuard`]
//! that is re-armed before every request head.

use super::head_guard::{GuardSettingsRef, HeadGuard, HeadSignal};
use super::Gateway;
use crate::tls::Terminator;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

/// How long a stopping process keeps answering on kept-alive connections.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds an idle kept-alive client connection stays open.
const KEEPALIVE_SECONDS: u64 = 60;

/// What every HTTP/2 client sends first (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct GatewayApp {
    pub proxy: Arc<HttpProxy<Gateway>>,
    pub guard: Arc<GuardSettingsRef>,
    /// Set on the HTTPS listeners.
    pub tls: Option<Arc<Terminator>>,
}

#[async_trait]
impl ServerApp for GatewayApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = crate::lifecycle::Connection::open();
        let (stream, h2) = match &self.tls {
            Some(tls) => {
                let stream = tls.accept(stream).await?;
                let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
                (stream, h2)
            }
            None => sniff_h2_preface(stream).await?,
        };
        if h2 {
            // pingora's HTTP/2 server: each stream is a request through the same proxy
            // phases, under the limits set on the proxy's `h2_options`.
            return self.proxy.process_new(stream, shutdown).await;
        }
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

/// Whether a plaintext connection opens with the HTTP/2 preface (prior knowledge, as
/// `curl --http2-prior-knowledge` and gRPC clients send it). Reads only until the bytes
/// differ from the preface, so a short HTTP/1 request is never held waiting, and puts
/// them back for whichever server reads next. `None` when the client left first.
async fn sniff_h2_preface(stream: Stream) -> Option<(Stream, bool)> {
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::AsyncReadExt;
    if !stream.as_any().is::<L4Stream>() {
        return Some((stream, false));
    }
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    let mut seen = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let matched = loop {
        let read = match filled {
            // Waiting for a first byte is an idle connection, as for HTTP/1.
            0 => l4.read(&mut seen).await,
            _ => match tokio::time::timeout(
                super::head_syntax::HeadLimits::default().deadline,
                l4.read(&mut seen[filled..]),
            )
            .await
            {
                Ok(read) => read,
                Err(_) => return None,
            },
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
        if seen[..filled] != H2_PREFACE[..filled] {
            break false;
        }
        if filled == H2_PREFACE.len() {
            break true;
        }
    };
    l4.rewind(&seen[..filled]);
    Some((l4 as Stream, matched))
}
