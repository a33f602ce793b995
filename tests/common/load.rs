//! Concurrent requests across replicas and keys, with a bounded number in flight.
//!
//! Hundreds of requests opened at once against three debug-built gateways on two cores
//! keep Redis's answers waiting past the limiter's 100 ms timeout, and a late answer is
//! the fallback of SPEC 8 by design. A few dozen in flight is still concurrent across
//! every replica and key, which is what the exactness tests are about.

use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests in flight at once in [`burst`].
pub const IN_FLIGHT: usize = 24;

/// Sends `n` GET requests, the `i`th to `urls[i % urls.len()]` with the key
/// `keys[i % keys.len()]`, [`IN_FLIGHT`] at a time. The status and error code of each.
pub async fn burst(urls: &[String], keys: &[String], n: usize) -> Vec<(u16, String)> {
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let (urls, keys) = (Arc::new(urls.to_vec()), Arc::new(keys.to_vec()));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT.min(n) {
        let (http, next, urls, keys) = (http.clone(), next.clone(), urls.clone(), keys.clone());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return answers;
                }
                let response = http
                    .get(&urls[i % urls.len()])
                    .header("X-API-Key", &keys[i % keys.len()])
                    .send()
                    .await
                    .expect("the gateway answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                let code = body["error"]["code"].as_str().unwrap_or("").to_string();
                answers.push((status, code));
            }
        }));
    }
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.expect("a worker finished"));
    }
    answers
}
