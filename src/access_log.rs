//! One JSON line per request, written by a thread of its own so the request path only
//! formats a line and hands it over. Never a secret: no credential header, no token, no
//! query string, and path segments shaped like a credential are redacted.

use crate::config::AccessLog as Destination;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
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

/// Lines waiting to be written; beyond this the newest are dropped (and counted).
const QUEUE: usize = 65_536;

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub auth_method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    /// The error code of a refusal, or `allowed`.
    pub outcome: &'a str,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub duration_ms: f64,
    pub auth_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
}

enum Message {
    Line(String),
    /// Write everything queued, then answer.
    Flush(SyncSender<()>),
}

pub struct AccessLogger {
    sender: Option<SyncSender<Message>>,
    pub dropped: AtomicU64,
}

impl AccessLogger {
    /// Starts the writer thread for `destination` (none for `off`).
    pub fn start(destination: &Destination) -> std::io::Result<AccessLogger> {
        let output: Box<dyn Write + Send> = match destination {
            Destination::Off => {
                return Ok(AccessLogger {
                    sender: None,
                    dropped: AtomicU64::new(0),
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
        let (sender, receiver) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(receiver, output))?;
        Ok(AccessLogger {
            sender: Some(sender),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    pub fn log(&self, entry: &Entry<'_>) {
        let Some(sender) = &self.sender else { return };
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        if let Err(TrySendError::Full(_)) = sender.try_send(Message::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes out every queued line (waiting at most a second): before the process exits.
    pub fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (done, wait) = sync_channel(1);
        if sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(1));
        }
    }
}

fn write_lines(receiver: Receiver<Message>, output: Box<dyn Write + Send>) {
    let mut output = std::io::BufWriter::with_capacity(64 * 1024, output);
    let write =
        |output: &mut std::io::BufWriter<Box<dyn Write + Send>>, message: Message| match message {
            Message::Line(line) => {
                let _ = output.write_all(line.as_bytes());
                let _ = output.write_all(b"\n");
            }
            Message::Flush(done) => {
                let _ = output.flush();
                let _ = done.send(());
            }
        };
    loop {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(message) => {
                write(&mut output, message);
                // Write what is queued, then flush once the queue is empty.
                while let Ok(message) = receiver.try_recv() {
                    write(&mut output, message);
                }
                let _ = output.flush();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = output.flush();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
