//! Runs an axum router as a pingora background service on a socket bound before start.

use async_trait::async_trait;
use axum::Router;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Mutex;

/// Binds `addr` with `SO_REUSEPORT`, so a process taking over during an upgrade can bind
/// the same admin and metrics ports while the old one drains.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

pub struct RouterService {
    name: &'static str,
    listener: Mutex<Option<std::net::TcpListener>>,
    router: Router,
}

impl RouterService {
    pub fn new(name: &'static str, listener: std::net::TcpListener, router: Router) -> Self {
        RouterService {
            name,
            listener: Mutex::new(Some(listener)),
            router,
        }
    }
}

#[async_trait]
impl BackgroundService for RouterService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut slot| slot.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(service = self.name, %error, "cannot start listener");
                return;
            }
        };
        let served = axum::serve(listener, self.router.clone())
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(service = self.name, %error, "listener stopped");
        }
    }
}
