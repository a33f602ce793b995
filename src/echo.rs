//! A small echo API: answers JSON describing the request it received. The demo's upstream,
//! and the upstream of the integration tests (which also read what it recorded).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// One request as the echo server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// Every value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Shared log of the requests an echo server received.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl Recorder {
    pub fn requests(&self) -> Vec<Recorded> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut log) = self.0.lock() {
            log.clear();
        }
    }

    fn push(&self, request: Recorded) {
        if let Ok(mut log) = self.0.lock() {
            if log.len() >= RECORD_AT_MOST {
                log.remove(0);
            }
            log.push(request);
        }
    }
}

pub fn router(recorder: Recorder) -> Router {
    Router::new().fallback(echo).with_state(recorder)
}

/// Keeps the last requests only, so a long-running echo server stays small.
const RECORD_AT_MOST: usize = 10_000;

async fn echo(
    State(recorder): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let mut shown = Map::new();
    let mut recorded_headers = Vec::with_capacity(headers.len());
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded_headers.push((name.as_str().to_string(), value.clone()));
        shown.insert(name.as_str().to_string(), Value::String(value));
    }
    recorder.push(Recorded {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: recorded_headers,
        body: body.to_vec(),
    });
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": shown,
        "body_bytes": body.len(),
    }))
}

/// Serves the echo API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, recorder: Recorder) -> std::io::Result<()> {
    axum::serve(listener, router(recorder)).await
}
