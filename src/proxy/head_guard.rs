//! Guards each request head as it arrives: a total deadline (slowloris), limits on the
//! request line, header bytes and header count, and the syntax of the whole head
//! ([`check_head`]), answered before pingora parses. A client that pipelines has its
//! later heads checked from pingora's own copy instead (see [`HeadSignal`]).

use super::head_syntax::{check_head, Body, HeadLimits, HeadScanner, Scan};
use crate::denial::{error_body, Denial};
use crate::metrics::Metrics;
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::protocols::{SocketDigest, TimingDigest};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the scanner is in the current request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a head; idle keep-alive time is not counted.
    Armed,
    /// Inside a head that began at `started`.
    Head { started: Instant },
    /// The head is complete; body bytes pass through untouched.
    Done,
}

/// Tells a connection's guard where the next head stands, and the proxy whether the guard
/// saw it. The connection loop sets [`HeadSignal::REARM`] before each request. A guard that
/// reads a head sets it back to quiet. When pingora parsed the head from bytes read with an
/// earlier request (pipelining), the guard never scanned it: the proxy then checks
/// pingora's copy of the head and sets [`HeadSignal::HEAD_DONE`], so the guard passes what
/// follows (the body) untouched.
#[derive(Debug, Clone)]
pub struct HeadSignal(pub Arc<AtomicU8>);

impl HeadSignal {
    pub const QUIET: u8 = 0;
    pub const REARM: u8 = 1;
    pub const HEAD_DONE: u8 = 2;
    /// The guard knows the connection pipelines and left the head to the proxy.
    pub const PIPELINED: u8 = 3;

    pub fn rearm(&self) {
        self.0.store(Self::REARM, Ordering::Relaxed);
    }

    /// Called once pingora has parsed a head: whether the guard did not scan it.
    pub fn head_parsed(&self) -> bool {
        let unscanned = matches!(
            self.0.load(Ordering::Relaxed),
            Self::REARM | Self::PIPELINED
        );
        if unscanned {
            self.0.store(Self::HEAD_DONE, Ordering::Relaxed);
        }
        unscanned
    }
}

/// Shared by every guarded connection of one listener.
pub struct GuardSettings {
    pub limits: HeadLimits,
    pub metrics: Arc<Metrics>,
}

/// The downstream stream, wrapped so each request head is checked as its bytes arrive.
#[derive(Debug)]
pub struct HeadGuard {
    inner: Stream,
    settings: Arc<GuardSettingsRef>,
    rearm: Arc<AtomicU8>,
    phase: Phase,
    scanner: HeadScanner,
    timer: Option<Pin<Box<Sleep>>>,
    /// The bytes of the current head, checked whole once it ends.
    head: Vec<u8>,
    /// Body bytes still expected after the head, when its framing says (not chunked).
    body_left: Option<u64>,
    /// The client sent the next request before this one's response: later heads arrive
    /// inside earlier reads, where only pingora can find where they start.
    pipelining: bool,
    /// A refusal being written: the bytes and how many went out.
    refusal: Option<(Vec<u8>, usize)>,
}

/// Debug-printable handle on the settings.
pub struct GuardSettingsRef(pub GuardSettings);

impl std::fmt::Debug for GuardSettingsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardSettings")
            .field("limits", &self.0.limits)
            .finish()
    }
}

impl HeadGuard {
    /// Wraps a new connection. Setting `rearm` makes the guard watch the next head.
    pub fn wrap(inner: Stream, settings: Arc<GuardSettingsRef>, rearm: Arc<AtomicU8>) -> Stream {
        Box::new(HeadGuard {
            inner,
            settings,
            rearm,
            phase: Phase::Armed,
            scanner: HeadScanner::default(),
            timer: None,
            head: Vec::new(),
            body_left: Some(0),
            pipelining: false,
            refusal: None,
        })
    }

    /// Starts guarding the next request head on this stream, once the current response
    /// is done (a kept-alive connection).
    fn take_rearm(&mut self) {
        match self.rearm.load(Ordering::Relaxed) {
            HeadSignal::REARM if self.pipelining => {
                // The next head may have begun inside an earlier read: the proxy checks it.
                self.rearm.store(HeadSignal::PIPELINED, Ordering::Relaxed);
                self.phase = Phase::Done;
                self.timer = None;
            }
            HeadSignal::REARM => {
                self.rearm.store(HeadSignal::QUIET, Ordering::Relaxed);
                self.phase = Phase::Armed;
                self.scanner = HeadScanner::default();
                self.timer = None;
                if self.head.capacity() > 4096 {
                    self.head = Vec::new();
                }
                self.head.clear();
            }
            // The head was parsed from bytes a pipelining client sent ahead: what follows
            // is body, and the connection pipelines from now on.
            HeadSignal::HEAD_DONE => {
                self.rearm.store(HeadSignal::QUIET, Ordering::Relaxed);
                self.phase = Phase::Done;
                self.timer = None;
                self.body_left = None;
                self.pipelining = true;
            }
            _ => {}
        }
    }

    /// Counts `count` bytes read after the head; more than the announced body means the
    /// client has already sent its next request.
    fn after_head(&mut self, count: usize) {
        if let Some(left) = self.body_left {
            let count = count as u64;
            if count > left {
                self.pipelining = true;
                self.body_left = Some(0);
            } else {
                self.body_left = Some(left - count);
            }
        }
    }

    fn refuse(&mut self, denial: Denial) {
        let settings = &self.settings.0;
        settings
            .metrics
            .requests
            .with_label_values(&["unmatched", "OTHER", &denial.status().to_string()])
            .inc();
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = error_body(&denial, &request_id);
        let response = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n{body}",
            denial.status(),
            reason(denial.status()),
            body.len(),
        );
        tracing::info!(code = denial.code(), "request head refused");
        self.phase = Phase::Done;
        self.timer = None;
        self.refusal = Some((response.into_bytes(), 0));
    }

    /// Writes the pending refusal, then fails the read so pingora drops the connection.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.refusal {
            while *written < bytes.len() {
                match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => *written += n,
                }
            }
            let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request head refused by the head guard",
        )))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        _ => "Request Header Fields Too Large",
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.take_rearm();
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        if this.phase == Phase::Done {
            let before = buf.filled().len();
            let read = Pin::new(&mut this.inner).poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = read {
                this.after_head(buf.filled().len() - before);
            }
            return read;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if fresh.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if this.phase == Phase::Armed {
                    this.phase = Phase::Head {
                        started: Instant::now(),
                    };
                }
                let limits = &this.settings.0.limits;
                match this.scanner.feed(fresh, limits) {
                    Scan::Partial if this.phase_expired(limits) => {
                        buf.set_filled(before);
                        this.refuse(Denial::HeadTimeout);
                        this.poll_refusal(cx)
                    }
                    Scan::Partial => {
                        this.head.extend_from_slice(fresh);
                        Poll::Ready(Ok(()))
                    }
                    Scan::Complete(end) => {
                        this.head.extend_from_slice(&fresh[..end]);
                        let rest = fresh.len() - end;
                        match check_head(&this.head, limits) {
                            Ok(body) => {
                                this.phase = Phase::Done;
                                this.timer = None;
                                this.body_left = match body {
                                    Body::Length(length) => Some(length),
                                    Body::Chunked => None,
                                };
                                this.after_head(rest);
                                Poll::Ready(Ok(()))
                            }
                            Err(denial) => {
                                buf.set_filled(before);
                                this.refuse(denial);
                                this.poll_refusal(cx)
                            }
                        }
                    }
                    Scan::Refuse(denial) => {
                        buf.set_filled(before);
                        this.refuse(denial);
                        this.poll_refusal(cx)
                    }
                }
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let Phase::Head { started } = this.phase else {
                    return Poll::Pending;
                };
                let deadline = started + this.settings.0.limits.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.refuse(Denial::HeadTimeout);
                    return this.poll_refusal(cx);
                }
                Poll::Pending
            }
        }
    }
}

impl HeadGuard {
    /// A client that keeps trickling bytes is cut at the deadline too.
    fn phase_expired(&self, limits: &HeadLimits) -> bool {
        matches!(self.phase, Phase::Head { started } if started.elapsed() > limits.deadline)
    }
}

use std::future::Future;

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadGuard {}
