//! The webhook sender: claims due deliveries from the outbox by lease, posts each signed
//! event with a client of its own (a timeout, no redirects, every resolved address
//! checked), and records the outcome: delivered, retried after a backoff, or failed once
//! `max_attempts` are spent.

use super::backoff;
use super::destination::{self, GuardedResolver, Refused};
use super::signature;
use crate::clock;
use crate::config::WebhookConfig;
use crate::store::sync::Syncer;
use crate::store::{Claimed, DeliveryState, Store};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How often the outbox is read for due deliveries.
const POLL: Duration = Duration::from_millis(500);
/// Deliveries claimed at once; a full batch is followed by another at once.
const BATCH: i64 = 32;
/// How long after an attempt's timeout its lease still holds.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How much of a refusal's text is kept as `last_error`.
const MAX_ERROR: usize = 300;

/// `tollgate_webhook_deliveries_total{result}` and `tollgate_webhook_queue_depth`.
#[derive(Clone)]
pub struct WebhookMetrics {
    pub deliveries: prometheus::IntCounterVec,
    pub queue_depth: prometheus::IntGauge,
}

impl WebhookMetrics {
    pub fn new(registry: &crate::metrics::Metrics) -> Self {
        let deliveries = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tollgate_webhook_deliveries_total",
                "Webhook delivery attempts by result: delivered, retry (failed, tried again later), failed (the last attempt failed), refused (the destination resolved to a private address).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for result in ["delivered", "retry", "failed", "refused"] {
            deliveries.with_label_values(&[result]);
        }
        let queue_depth = prometheus::IntGauge::new(
            "tollgate_webhook_queue_depth",
            "Webhook deliveries pending: not yet delivered, not yet failed.",
        )
        .expect("static metric definition");
        registry.register(Box::new(deliveries.clone()));
        registry.register(Box::new(queue_depth.clone()));
        WebhookMetrics {
            deliveries,
            queue_depth,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// A 2xx answer.
    Delivered(u16),
    /// Any other answer.
    Answered(u16),
    /// No answer: a connection failure or a timeout.
    NoAnswer(String),
    /// The destination is, or resolved to, an address webhooks may not reach.
    Refused(String),
}

/// The state a delivery moves to after an attempt, and when it is tried next.
pub fn next_state(
    attempted: &Attempted,
    attempts: i64,
    settings: &WebhookConfig,
    now: i64,
    jitter: f64,
) -> (DeliveryState, i64) {
    if matches!(attempted, Attempted::Delivered(_)) {
        return (DeliveryState::Delivered, now);
    }
    if attempts >= i64::from(settings.max_attempts) {
        return (DeliveryState::Failed, now);
    }
    let failures = u32::try_from(attempts.max(1)).unwrap_or(u32::MAX);
    let wait = backoff::delay(settings.retry_base, failures, jitter);
    (DeliveryState::Pending, now + wait.as_millis() as i64)
}

struct Sender {
    syncer: Arc<Syncer>,
    settings: WebhookConfig,
    client: reqwest::Client,
    metrics: WebhookMetrics,
    /// This process, as the owner of the leases it takes.
    owner: String,
}

/// The background service that sends webhooks.
pub struct Deliverer(Arc<Sender>);

impl Deliverer {
    pub fn new(
        settings: &WebhookConfig,
        syncer: Arc<Syncer>,
        metrics: WebhookMetrics,
    ) -> anyhow::Result<Deliverer> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver::shared(settings.allow_private_destinations))
            .user_agent(concat!("tollgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()?;
        Ok(Deliverer(Arc::new(Sender {
            syncer,
            settings: settings.clone(),
            client,
            metrics,
            // The process id names the replica to whoever reads the lease.
            owner: format!(
                "pid{}_{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
        })))
    }
}

impl Sender {
    /// Claims a batch and makes its attempts concurrently; returns how many were claimed.
    async fn round(self: &Arc<Self>, store: &Store) -> usize {
        let now = clock::now_ms();
        let lease = (self.settings.timeout + LEASE_MARGIN).as_millis() as i64;
        let claimed = match store
            .claim_deliveries(&self.owner, now, now + lease, BATCH)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim webhook deliveries; trying again shortly");
                return 0;
            }
        };
        let count = claimed.len();
        let mut attempts = JoinSet::new();
        for delivery in claimed {
            let sender = self.clone();
            let store = store.clone();
            attempts.spawn(async move { sender.deliver(&store, delivery).await });
        }
        while attempts.join_next().await.is_some() {}
        if let Ok(depth) = store.queue_depth().await {
            self.metrics.queue_depth.set(depth);
        }
        count
    }

    async fn deliver(&self, store: &Store, claimed: Claimed) {
        let attempted = self.attempt(&claimed).await;
        let now = clock::now_ms();
        let jitter = rand::rng().random_range(-1.0..=1.0);
        let (state, next) = next_state(&attempted, claimed.attempts, &self.settings, now, jitter);
        let (status, error) = match &attempted {
            Attempted::Delivered(status) => (Some(i64::from(*status)), None),
            Attempted::Answered(status) => (
                Some(i64::from(*status)),
                Some(format!("the endpoint answered {status}")),
            ),
            Attempted::NoAnswer(error) => (None, Some(error.clone())),
            Attempted::Refused(error) => (None, Some(format!("destination_not_allowed: {error}"))),
        };
        let result = match (&attempted, state) {
            (Attempted::Delivered(_), _) => "delivered",
            (Attempted::Refused(_), _) => "refused",
            (_, DeliveryState::Failed) => "failed",
            _ => "retry",
        };
        self.metrics.deliveries.with_label_values(&[result]).inc();
        let error = error.map(|mut text| {
            if text.len() > MAX_ERROR {
                let mut cut = MAX_ERROR;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            text
        });
        tracing::info!(
            delivery = %claimed.delivery_id,
            event = %claimed.event_id,
            endpoint = %claimed.endpoint.id,
            attempt = claimed.attempts,
            result,
            status = status.unwrap_or(0),
            "webhook attempt"
        );
        if let Err(error) = store
            .finish_attempt(
                &claimed.delivery_id,
                &self.owner,
                state,
                status,
                error.as_deref(),
                next,
            )
            .await
        {
            // The lease runs out and the delivery is attempted again: at least once.
            tracing::warn!(%error, delivery = %claimed.delivery_id, "cannot record a webhook attempt; it will be made again");
        }
    }

    async fn attempt(&self, claimed: &Claimed) -> Attempted {
        let allow_private = self.settings.allow_private_destinations;
        let url = match destination::parse(&claimed.endpoint.url, allow_private) {
            Ok(url) => url,
            Err(Refused::NotAllowed(why)) => return Attempted::Refused(why),
            Err(Refused::Invalid(why)) => return Attempted::NoAnswer(why),
        };
        let now = clock::now_ms();
        let timestamp = now.div_euclid(1000);
        let signature = signature::header(
            &claimed.endpoint.signing_secrets(now),
            &claimed.event_id,
            timestamp,
            claimed.body.as_bytes(),
        );
        let sent = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &claimed.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Attempted::Delivered(response.status().as_u16())
            }
            Ok(response) => Attempted::Answered(response.status().as_u16()),
            Err(error) => {
                if let Some(refused) = refusal(&error) {
                    return Attempted::Refused(refused);
                }
                // Without the URL: a webhook URL may carry a token of the receiver's.
                let error = error.without_url();
                if error.is_timeout() {
                    Attempted::NoAnswer(format!(
                        "no answer within {} ms",
                        self.settings.timeout.as_millis()
                    ))
                } else {
                    Attempted::NoAnswer(chain(&error))
                }
            }
        }
    }
}

/// The destination refusal inside a client error, if that is what stopped it.
fn refusal(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(Refused::NotAllowed(why)) = current.downcast_ref::<Refused>() {
            return Some(why.clone());
        }
        source = current.source();
    }
    None
}

/// An error and its causes, as one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Deliverer {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            let claimed = match self.0.syncer.store() {
                Some(store) => self.0.round(store).await,
                None => 0,
            };
            if claimed as i64 == BATCH {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookConfig {
        WebhookConfig {
            max_attempts: 4,
            retry_base: Duration::from_secs(5),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn a_2xx_ends_the_delivery() {
        let (state, _) = next_state(&Attempted::Delivered(204), 1, &settings(), 0, 0.0);
        assert_eq!(state, DeliveryState::Delivered);
    }

    #[test]
    fn failures_back_off_until_the_last_attempt() {
        let failed = Attempted::Answered(500);
        assert_eq!(
            next_state(&failed, 1, &settings(), 1_000, 0.0),
            (DeliveryState::Pending, 6_000)
        );
        assert_eq!(
            next_state(&failed, 2, &settings(), 1_000, 0.0),
            (DeliveryState::Pending, 21_000)
        );
        let timeout = Attempted::NoAnswer("no answer".into());
        assert_eq!(
            next_state(&timeout, 3, &settings(), 1_000, 0.0).0,
            DeliveryState::Pending
        );
        assert_eq!(
            next_state(&timeout, 4, &settings(), 1_000, 0.0),
            (DeliveryState::Failed, 1_000)
        );
        let refused = Attempted::Refused("private".into());
        assert_eq!(
            next_state(&refused, 4, &settings(), 1_000, 0.0).0,
            DeliveryState::Failed
        );
    }
}
