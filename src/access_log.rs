//! One JSON line per request, formatted by the worker into a buffer of its own and written
//! by a thread of its own ten times a second: no hand-off, wake-up or syscall per line.
//! Never a secret: no credential header, no token, no query string, and path segments
//! shaped like a credential are redacted.

use crate::config::AccessLog as Destination;
use crate::metrics::Metrics;
use prometheus::IntCounter;
use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `path` with every segment that looks like a credential (an API key with `key_prefix`,
/// a JWT, a refresh token) replaced, for a client that put one in its URL by mistake.
pub fn redact_path<'a>(path: &'a str, key_prefix: &str) -> std::borrow::Cow<'a, str> {
    let secret = |segment: &str| {
        let after_prefix = segment.strip_prefix(key_prefix).unwrap_or_default();
        after_prefix.starts_with('_')
            || after_prefix
                .get(..3)
                .is_some_and(|c| c.eq_ignore_ascii_case("%5f"))
            || segment.starts_with("eyJ")
            || segment.starts_with("tgr_")
    };
    if !path.split('/').any(secret) {
        return std::borrow::Cow::Borrowed(path);
    }
    let redacted: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if secret(segment) {
                "[redacted]"
            } else {
                segment
            }
        })
        .collect();
    std::borrow::Cow::Owned(redacted.join("/"))
}

/// How often the writer takes what the workers formatted: the bound on how late a line is.
const WRITE_EVERY: Duration = Duration::from_millis(100);

/// Bytes a worker may hold unwritten; past this (the destination cannot keep up) new lines
/// are dropped and counted in `tollgate_access_log_dropped_total`.
const MAX_PENDING: usize = 8 * 1024 * 1024;

/// One request, as logged.
#[derive(Debug)]
pub struct Entry<'a> {
    /// When the request finished, in Unix milliseconds (written as RFC 3339 UTC).
    pub ts: i64,
    pub request_id: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub auth_method: &'a str,
    pub key_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// The error code of a refusal, or `allowed`.
    pub outcome: &'a str,
    pub client: IpAddr,
    pub upstream: Option<&'a str>,
    pub upstream_status: Option<u16>,
    /// Durations in microseconds, written as milliseconds with three decimals.
    pub duration_us: u64,
    pub auth_us: u64,
    pub upstream_us: Option<u64>,
}

impl Entry<'_> {
    /// Appends the entry as one JSON object and a newline: written field by field, with
    /// strings escaped as JSON requires, so the request path formats without serde.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        timestamp(out, self.ts);
        out.push(b'"');
        field_str(out, "request_id", self.request_id);
        field_str(out, "route", self.route);
        field_str(out, "method", self.method);
        field_str(out, "path", self.path);
        out.extend_from_slice(b",\"status\":");
        number(out, u64::from(self.status));
        field_str(out, "auth_method", self.auth_method);
        if let Some(key_id) = self.key_id {
            field_str(out, "key_id", key_id);
        }
        if let Some(client_id) = self.client_id {
            field_str(out, "client_id", client_id);
        }
        field_str(out, "outcome", self.outcome);
        out.extend_from_slice(b",\"client\":\"");
        let _ = write!(out, "{}", self.client);
        out.push(b'"');
        if let Some(upstream) = self.upstream {
            field_str(out, "upstream", upstream);
        }
        if let Some(status) = self.upstream_status {
            out.extend_from_slice(b",\"upstream_status\":");
            number(out, u64::from(status));
        }
        out.extend_from_slice(b",\"duration_ms\":");
        millis(out, self.duration_us);
        out.extend_from_slice(b",\"auth_ms\":");
        millis(out, self.auth_us);
        if let Some(upstream) = self.upstream_us {
            out.extend_from_slice(b",\"upstream_ms\":");
            millis(out, upstream);
        }
        out.extend_from_slice(b"}\n");
    }
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    string(out, value);
}

/// A JSON string: `"` and `\\` escaped, control characters as `\\u00XX`.
fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape.is_empty() {
            true => {
                let _ = write!(out, "\\u{byte:04x}");
            }
            false => out.extend_from_slice(escape),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

thread_local! {
    /// The last second formatted (`2026-12-02T14:50:00`), reused for every line within it.
    static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// RFC 3339 UTC to the millisecond: the same text as `clock::rfc3339_millis`, with the
/// date and time formatted once a second rather than once a line.
fn timestamp(out: &mut Vec<u8>, ms: i64) {
    let second = ms.div_euclid(1000);
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let full = crate::clock::rfc3339_millis(second * 1000);
            cached.1 = full
                .trim_end_matches("Z")
                .trim_end_matches(".000")
                .to_string();
            cached.0 = second;
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
    let _ = write!(out, ".{:03}Z", ms.rem_euclid(1000));
}

fn number(out: &mut Vec<u8>, value: u64) {
    let _ = write!(out, "{value}");
}

/// Microseconds as milliseconds with three decimals: `1234` is `1.234`.
fn millis(out: &mut Vec<u8>, micros: u64) {
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// A worker's lines, formatted and not yet written.
type Pending = Arc<Mutex<Vec<u8>>>;

/// What the workers and the writer thread share.
struct Shared {
    /// Tells loggers apart in a worker's thread-local list (tests run several).
    id: usize,
    /// One buffer per worker thread that has logged.
    buffers: Mutex<Vec<Pending>>,
    dropped: IntCounter,
}

thread_local! {
    /// This thread's buffer for each logger it has written to.
    static BUFFERS: RefCell<Vec<(usize, Pending)>> = const { RefCell::new(Vec::new()) };
}

enum Command {
    /// Write everything formatted so far, then answer.
    Flush(SyncSender<()>),
}

/// The access log: each worker formats into a buffer of its own; a writer thread takes
/// every buffer at once [`WRITE_EVERY`] and writes it, so a busy worker pays neither a
/// wake-up nor a syscall per line (the thread is woken by its timer, not by lines).
pub struct AccessLogger {
    shared: Option<Arc<Shared>>,
    commands: Option<SyncSender<Command>>,
}

impl AccessLogger {
    /// Starts the writer thread for `destination` (none for `off`). Lines it had to drop
    /// are counted in `tollgate_access_log_dropped_total`.
    pub fn start(destination: &Destination, metrics: &Metrics) -> std::io::Result<AccessLogger> {
        let dropped = IntCounter::new(
            "tollgate_access_log_dropped_total",
            "Access-log lines dropped because the destination could not keep up.",
        )
        .expect("static metric definition");
        metrics.register(Box::new(dropped.clone()));
        let output: Box<dyn Write + Send> = match destination {
            Destination::Off => {
                return Ok(AccessLogger {
                    shared: None,
                    commands: None,
                })
            }
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::File(path) => {
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(folder)?;
                }
                Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                )
            }
        };
        static IDS: AtomicUsize = AtomicUsize::new(0);
        let shared = Arc::new(Shared {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            buffers: Mutex::new(Vec::new()),
            dropped,
        });
        let (commands, receiver) = sync_channel(4);
        let writer = Writer {
            shared: shared.clone(),
            output,
            spare: Vec::new(),
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(receiver))?;
        Ok(AccessLogger {
            shared: Some(shared),
            commands: Some(commands),
        })
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    pub fn log(&self, entry: &Entry<'_>) {
        let Some(shared) = &self.shared else { return };
        BUFFERS.with(|buffers| {
            let mut buffers = buffers.borrow_mut();
            let index = match buffers.iter().position(|(id, _)| *id == shared.id) {
                Some(index) => index,
                None => {
                    let pending = Pending::default();
                    if let Ok(mut all) = shared.buffers.lock() {
                        all.push(pending.clone());
                    }
                    buffers.push((shared.id, pending));
                    buffers.len() - 1
                }
            };
            let Ok(mut pending) = buffers[index].1.lock() else {
                return;
            };
            if pending.len() >= MAX_PENDING {
                shared.dropped.inc();
                return;
            }
            entry.write_line(&mut pending);
        });
    }

    /// Writes out every line formatted so far (waiting at most a second): before the
    /// process exits.
    pub fn flush(&self) {
        let Some(commands) = &self.commands else {
            return;
        };
        let (done, wait) = sync_channel(1);
        if commands.send(Command::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(1));
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    output: Box<dyn Write + Send>,
    /// An emptied buffer kept for the next swap, so workers rarely allocate.
    spare: Vec<u8>,
}

impl Writer {
    fn run(mut self, commands: Receiver<Command>) {
        loop {
            match commands.recv_timeout(WRITE_EVERY) {
                Ok(Command::Flush(done)) => {
                    self.write_all();
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => self.write_all(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_all();
                    return;
                }
            }
        }
    }

    /// Takes each worker's lines (holding its lock only for a swap) and writes them.
    fn write_all(&mut self) {
        let buffers: Vec<Pending> = match self.shared.buffers.lock() {
            Ok(all) => all.clone(),
            Err(_) => return,
        };
        for pending in buffers {
            let mut taken = std::mem::take(&mut self.spare);
            if let Ok(mut lines) = pending.lock() {
                if lines.is_empty() {
                    self.spare = taken;
                    continue;
                }
                std::mem::swap(&mut *lines, &mut taken);
            }
            let _ = self.output.write_all(&taken);
            taken.clear();
            // Keep a moderate buffer for the next swap, not a burst's worth.
            if taken.capacity() <= 1024 * 1024 {
                self.spare = taken;
            }
        }
        let _ = self.output.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a str, key_id: Option<&'a str>) -> Entry<'a> {
        Entry {
            ts: 1_764_686_400_123,
            request_id: "req-1",
            route: "accounts",
            method: "GET",
            path,
            status: 200,
            auth_method: "api_key",
            key_id,
            client_id: key_id.map(|_| "cid_1"),
            outcome: "allowed",
            client: IpAddr::from([127, 0, 0, 1]),
            upstream: Some("api"),
            upstream_status: Some(200),
            duration_us: 1_234,
            auth_us: 5,
            upstream_us: Some(1_000),
        }
    }

    #[test]
    fn a_line_is_json_with_every_field_and_escapes() {
        let mut out = Vec::new();
        entry("/v1/\"odd\"\\path\u{1}", Some("key_1")).write_line(&mut out);
        entry("/v1/plain", None).write_line(&mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["ts"], crate::clock::rfc3339_millis(1_764_686_400_123));
        assert_eq!(first["path"], "/v1/\"odd\"\\path\u{1}");
        assert_eq!(first["key_id"], "key_1");
        assert_eq!(first["client"], "127.0.0.1");
        assert_eq!(first["status"], 200);
        assert_eq!(first["duration_ms"], 1.234);
        assert_eq!(first["auth_ms"], 0.005);
        assert_eq!(first["upstream_ms"], 1.0);
        assert!(lines[1].get("key_id").is_none() && lines[1].get("client_id").is_none());
    }

    #[test]
    fn lines_reach_the_file_within_the_write_interval_and_at_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Metrics::new();
        let logger = AccessLogger::start(&Destination::File(path.clone()), &metrics).unwrap();
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        // From several threads, as pingora's workers log.
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..250 {
                        logger.log(&entry("/v1/x", None));
                    }
                });
            }
        });
        logger.flush();
        assert_eq!(read().lines().count(), 1000);
        logger.log(&entry("/v1/late", None));
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while read().lines().count() < 1001 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            read().lines().count(),
            1001,
            "written by the timer, not the worker"
        );
    }

    #[test]
    fn credential_shaped_segments_are_redacted() {
        assert_eq!(redact_path("/v1/accounts/42", "tg"), "/v1/accounts/42");
        assert_eq!(redact_path("/v1/tg_live_abc/x", "tg"), "/v1/[redacted]/x");
        assert_eq!(redact_path("/v1/eyJhbGci.x.y", "tg"), "/v1/[redacted]");
        assert_eq!(redact_path("/tgr_abc", "tg"), "/[redacted]");
        assert_eq!(redact_path("/tgx/tg", "tg"), "/tgx/tg");
        assert_eq!(redact_path("/tg%5flive_x", "tg"), "/[redacted]");
    }
}
