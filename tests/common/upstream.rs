//! The echo upstream: a real HTTP API on a free port that records every request it gets.

use std::net::{SocketAddr, TcpListener};
use std::sync::OnceLock;
use std::time::Duration;
use tollgate::echo::Recorder;

/// One runtime per test binary for the upstreams, so they outlive any single test.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// The echo API plus `/slow/{ms}`, which waits before answering. Records every request.
pub struct Upstream {
    pub addr: SocketAddr,
    pub recorder: Recorder,
}

pub fn upstream() -> Upstream {
    let recorder = Recorder::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let slow = axum::routing::any(
        |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "slow done"
        },
    );
    let app = axum::Router::new()
        .route("/slow/{ms}", slow.clone())
        .route("/timeout/slow/{ms}", slow)
        .merge(tollgate::echo::router(recorder.clone()));
    runtime().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let _ = axum::serve(listener, app).await;
    });
    Upstream { addr, recorder }
}
