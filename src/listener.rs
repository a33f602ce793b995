//! Every listening socket of the process, bound before anything is announced: a port that
//! another process holds stops the start with one line naming it. On an upgrade the sockets
//! come from the running process by descriptor transfer (pingora's `upgrade_sock`), for the
//! admin and metrics listeners as for the data plane, so no listener ever shares a port.
//! Also: the admin and metrics routers served on those sockets.

use async_trait::async_trait;
use axum::Router;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::sync::{Arc, Mutex};

/// pingora's backlog for the data plane, kept for every listener.
const BACKLOG: i32 = 65_535;

/// A listener the config asks for: the setting it comes from, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub setting: &'static str,
    pub addr: SocketAddr,
}

/// Why a listener could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: cannot listen on {addr}: {reason}")]
pub struct BindError {
    pub setting: &'static str,
    pub addr: SocketAddr,
    pub reason: String,
}

/// Binds `addr` as a listener of its own: `SO_REUSEADDR` (a restart need not wait out
/// TIME_WAIT) but never `SO_REUSEPORT`, so the kernel refuses an address that another
/// listening socket holds instead of splitting its connections between two processes.
pub fn bind(wanted: Wanted) -> Result<std::net::TcpListener, BindError> {
    let failed = |error: std::io::Error| BindError {
        setting: wanted.setting,
        addr: wanted.addr,
        reason: match error.kind() {
            std::io::ErrorKind::AddrInUse => "the address is in use by another process".into(),
            std::io::ErrorKind::AddrNotAvailable => "no interface has this address".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            _ => error.to_string(),
        },
    };
    let addr = wanted.addr;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(failed)?;
    socket.set_reuse_address(true).map_err(failed)?;
    if addr.is_ipv6() {
        // `[::]` means IPv6 and, through mapped addresses, IPv4: the system default.
        socket.set_only_v6(false).ok();
    }
    socket.set_nonblocking(true).map_err(failed)?;
    socket.bind(&addr.into()).map_err(failed)?;
    socket.listen(BACKLOG).map_err(failed)?;
    Ok(socket.into())
}

/// The process's listening sockets, bound by [`Sockets::bind_all`] before the server is
/// built, and handed to pingora's descriptor table when it starts.
pub struct Sockets {
    planned: Mutex<Vec<(Wanted, Option<std::net::TcpListener>)>>,
}

impl Sockets {
    /// Binds every address now. An upgrading process binds nothing here: its sockets come
    /// from the running process, and only an address new to its config is bound, at start.
    pub fn bind_all(wanted: &[Wanted], upgrade: bool) -> Result<Sockets, BindError> {
        let mut planned = Vec::with_capacity(wanted.len());
        for want in wanted {
            let bound = if upgrade { None } else { Some(bind(*want)?) };
            planned.push((*want, bound));
        }
        Ok(Sockets {
            planned: Mutex::new(planned),
        })
    }

    fn addresses(&self) -> Vec<String> {
        self.planned
            .lock()
            .map(|planned| planned.iter().map(|(w, _)| w.addr.to_string()).collect())
            .unwrap_or_default()
    }
}

/// Puts the bound sockets in pingora's descriptor table before any listening service
/// starts (they all depend on it), where pingora's listeners find them by address and a
/// later upgrade finds them to send on. An upgrade's inherited sockets are already there.
#[async_trait]
impl ServiceWithDependents for Sockets {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        _shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        let planned = match self.planned.lock() {
            Ok(mut planned) => std::mem::take(&mut *planned),
            Err(_) => Vec::new(),
        };
        if let Some(fds) = fds {
            for (wanted, bound) in planned {
                let key = wanted.addr.to_string();
                if fds.lock().get(&key).is_some() {
                    continue;
                }
                let listener = match bound.map_or_else(|| bind(wanted), Ok) {
                    Ok(listener) => listener,
                    Err(error) => {
                        // Nothing is served yet: say why and stop, rather than half-start.
                        eprintln!("error: {error}");
                        tracing::error!(%error, "cannot listen; exiting");
                        std::process::exit(1);
                    }
                };
                fds.lock().add(key, listener.into_raw_fd());
            }
        }
        ready.notify_ready();
    }

    fn name(&self) -> &str {
        "listening sockets"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.addresses())
    }
}

/// An axum router served by hyper on the connections of a pingora listening service: the
/// admin API and the metrics endpoint, on sockets that take part in upgrades.
pub struct RouterApp {
    router: Router,
    /// Set when the listener serves HTTPS (`admin.tls`).
    tls: Option<Arc<crate::tls::Terminator>>,
}

impl RouterApp {
    pub fn new(router: Router, tls: Option<Arc<crate::tls::Terminator>>) -> Self {
        RouterApp { router, tls }
    }
}

#[async_trait]
impl ServerApp for RouterApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|addr| addr.as_inet().copied()));
        let stream = match &self.tls {
            Some(tls) => tls.accept(stream).await?,
            None => stream,
        };
        let router = self.router.clone();
        let service =
            tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                if let Some(peer) = peer {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                }
                tower::ServiceExt::oneshot(router.clone(), request)
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
        tokio::pin!(connection);
        let mut shutdown = shutdown.clone();
        let stopping = async move {
            let _ = shutdown.changed().await;
            // Like the data plane: a client that sends on an open connection while the
            // process stops still gets its answer, for a moment.
            tokio::time::sleep(crate::proxy::app::LINGER).await;
        };
        let served = tokio::select! {
            served = connection.as_mut() => served,
            _ = stopping => {
                // Finish the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = served {
            tracing::debug!(%error, "admin connection ended with an error");
        }
        None
    }
}
