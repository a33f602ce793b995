//! The admin API, as an operator calls it.

use super::gateway::{Gateway, ADMIN_TOKEN};
use std::time::Duration;

/// The admin API, as an operator calls it.
pub struct Admin {
    pub base: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub fn of(gateway: &Gateway) -> Admin {
        Admin {
            base: format!("http://{}/admin/v1", gateway.admin),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Polls `GET path` until `test` holds of its answer (at most 15 s): for what the data
    /// plane writes back a moment later (balances, events).
    pub async fn until(
        &self,
        path: &str,
        test: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, answer) = self.get(path).await;
            if test(&answer) {
                return answer;
            }
            assert!(std::time::Instant::now() < deadline, "{path}: {answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for a `quota.exceeded` event about `subject` (a key's or an owner's id), then
    /// returns the ones about it and the ids of every subject one was sent for.
    pub async fn quota_events(&self, subject: &str) -> (Vec<serde_json::Value>, Vec<String>) {
        let page = self
            .until("/events?limit=500", |page| {
                page["data"].as_array().is_some_and(|events| {
                    events
                        .iter()
                        .any(|e| e["type"] == "quota.exceeded" && e["data"]["id"] == subject)
                })
            })
            .await;
        let quota: Vec<&serde_json::Value> = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "quota.exceeded")
            .collect();
        let about = quota
            .iter()
            .filter(|e| e["data"]["id"] == subject)
            .map(|e| (*e).clone())
            .collect();
        let subjects = quota
            .iter()
            .filter_map(|e| e["data"]["id"].as_str().map(str::to_string))
            .collect();
        (about, subjects)
    }

    /// Creates a key and returns (id, secret), panicking unless it is 201.
    pub async fn create_key(&self, body: serde_json::Value) -> (String, String) {
        let (status, key) = self.post("/keys", body).await;
        assert_eq!(status, 201, "{key}");
        (
            key["id"].as_str().expect("id").to_string(),
            key["key"].as_str().expect("key").to_string(),
        )
    }
}
