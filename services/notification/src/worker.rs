//! The background worker of every replica: delivers due webhook deliveries and escalates
//! due attendance notifications, woken by each publish and otherwise every poll interval.
//!
//! Deliveries are leased (`claim_deliveries`): no two workers attempt the same delivery at
//! once, and an attempt is given up at the client's timeout, well within the lease. The
//! outcome is written only under the lease that was claimed (fenced). A failed attempt is
//! retried after a full-jitter exponential backoff, drawn uniformly from
//! `[base, min(cap, base · 2ⁿ)]` after the n-th attempt, until the delivery is older than
//! the maximum age; then it is dead-lettered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpis_mesh::Shutdown;
use cpis_proto::notification::DeliveryState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::convert::{self, now_us};
use crate::escalation::escalation_of;
use crate::fanout::Fanout;
use crate::signature;
use crate::store::{
    AttemptOutcome, ClaimedDelivery, NotificationStore, StoredAttempt, WebhookStore,
};
use crate::webhook::client::WebhookClient;
use crate::webhook::{DELIVERY_ID_HEADER, SecretSealer, check_url, notification_json};

/// How many deliveries (or escalations) one round takes.
const BATCH: u32 = 32;

/// The longest error text kept.
const MAX_ERROR: usize = 1000;

/// The worker's timings.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// How often an idle worker looks for due work.
    pub poll_interval: Duration,
    /// The backoff's floor and unit.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_cap: Duration,
    /// How long a delivery is retried.
    pub max_age: Duration,
    /// How long a claim holds a delivery (longer than an attempt may take).
    pub lease: Duration,
}

/// Wakes the worker (after a publish): a wake-up sent while it is busy is kept.
#[derive(Debug, Clone, Default)]
pub struct WorkerWaker(Arc<Notify>);

impl WorkerWaker {
    /// Makes the worker look for due work now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The worker's metrics: `cpis_webhook_delivery_attempts_total{outcome}` (`delivered`,
/// `retrying`, `dead_lettered`, `cancelled`) and `cpis_notification_escalations_total`.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerMetrics {
    attempts: Family<Vec<(&'static str, &'static str)>, Counter>,
    escalations: Counter,
}

impl WorkerMetrics {
    /// Registers the counters in `metrics`.
    pub(crate) fn register(metrics: &cpis_mesh::metrics::Metrics) -> Self {
        let this = Self::default();
        let mut registry = metrics.registry();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "cpis_webhook_delivery_attempts",
            "Webhook delivery attempts by what followed (delivered, retrying, dead_lettered, \
             cancelled); alert on dead_lettered",
            this.attempts.clone(),
        );
        registry.register(
            "cpis_notification_escalations",
            "Attendance notifications escalated because nobody acknowledged them in time",
            this.escalations.clone(),
        );
        this
    }

    fn attempted(&self, state: DeliveryState) {
        let outcome = match state {
            DeliveryState::Delivered => "delivered",
            DeliveryState::DeadLettered => "dead_lettered",
            DeliveryState::Cancelled => "cancelled",
            _ => "retrying",
        };
        self.attempts
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }
}

/// One replica's worker.
pub(crate) struct Worker<S> {
    pub(crate) store: S,
    pub(crate) client: WebhookClient,
    pub(crate) sealer: SecretSealer,
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) settings: WorkerSettings,
    pub(crate) waker: WorkerWaker,
    pub(crate) shutdown: Shutdown,
    pub(crate) metrics: WorkerMetrics,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The wait after the `attempt`-th failed attempt: uniform in
/// `[base, min(cap, base · 2^attempt)]`.
pub fn backoff(settings: &WorkerSettings, attempt: u32, random: u64) -> Duration {
    let base = settings.backoff_base.as_micros();
    let ceiling = base
        .saturating_mul(1u128 << attempt.min(64))
        .min(settings.backoff_cap.as_micros())
        .max(base);
    let span = ceiling - base;
    let drawn = base + u128::from(random) % (span + 1);
    Duration::from_micros(u64::try_from(drawn).unwrap_or(u64::MAX))
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness the backoff is still bounded; only the jitter is lost.
    let _ = SystemRandom::new().fill(&mut bytes);
    u64::from_ne_bytes(bytes)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl<S: NotificationStore + WebhookStore> Worker<S> {
    /// Runs until shutdown.
    pub(crate) async fn run(self) {
        let worker_id = format!(
            "{}/{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "notification".to_owned()),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let this = Arc::new(self);
        loop {
            if let Err(error) = this.escalate_due().await {
                tracing::warn!(%error, "escalation round failed");
            }
            loop {
                match this.deliver_due(&worker_id).await {
                    Ok(n) if n == BATCH as usize => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "delivery round failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = this.shutdown.requested() => return,
                () = this.waker.0.notified() => {}
                () = tokio::time::sleep(this.settings.poll_interval) => {}
            }
        }
    }

    /// Escalates the notifications due now; how many.
    async fn escalate_due(&self) -> Result<usize, crate::store::StoreError> {
        let now = now_us();
        let due = self.store.due_escalations(now, BATCH).await?;
        let mut escalated = Vec::new();
        for id in due {
            if let Some(stored) = self
                .store
                .escalate(id, now, |original| escalation_of(original, now))
                .await?
            {
                tracing::info!(escalated = %id, escalation = %stored.notification_id, "escalated");
                self.metrics.escalations.inc();
                if let Ok(n) = convert::notification(&stored) {
                    escalated.push(n);
                }
            }
        }
        let count = escalated.len();
        if count > 0 {
            self.fanout.announce(escalated).await;
        }
        Ok(count)
    }

    /// Attempts the deliveries due now, concurrently; how many were claimed.
    async fn deliver_due(
        self: &Arc<Self>,
        worker_id: &str,
    ) -> Result<usize, crate::store::StoreError> {
        let now = now_us();
        let claims = self
            .store
            .claim_deliveries(
                worker_id,
                now,
                now.saturating_add(micros(self.settings.lease)),
                BATCH,
            )
            .await?;
        let count = claims.len();
        let mut attempts = tokio::task::JoinSet::new();
        for claim in claims {
            let this = self.clone();
            attempts.spawn(async move {
                let outcome = this.attempt(&claim).await;
                match this.store.finish_attempt(&claim, &outcome).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        delivery = %claim.delivery.delivery_id,
                        "delivery lease lost before its outcome was written"
                    ),
                    Err(error) => tracing::warn!(%error, "delivery outcome not written"),
                }
            });
        }
        while attempts.join_next().await.is_some() {}
        Ok(count)
    }

    /// One attempt of a claimed delivery, and what follows from it.
    async fn attempt(&self, claim: &ClaimedDelivery) -> AttemptOutcome {
        let delivery = &claim.delivery;
        let attempt_number = delivery.attempt_count.saturating_add(1);
        let started_us = now_us();
        let started = Instant::now();
        let result = match (&claim.webhook, &claim.notification) {
            (Some(webhook), Some(stored)) => {
                self.post(delivery.delivery_id, webhook, stored, started_us)
                    .await
            }
            _ => Err("the webhook was unregistered".to_owned()),
        };
        let latency_us = micros(started.elapsed());
        let (http_status, success, error) = match &result {
            Ok(status) if (200..300).contains(status) => (i32::from(*status), true, String::new()),
            Ok(status) => (
                i32::from(*status),
                false,
                format!("the receiver answered {status}"),
            ),
            Err(error) => (0, false, truncate(error.clone())),
        };
        let now = started_us.saturating_add(latency_us);
        let deadline = delivery
            .create_time_us
            .saturating_add(micros(self.settings.max_age));
        let (state, next_attempt_us) = if success {
            (DeliveryState::Delivered, None)
        } else if claim.webhook.is_none() {
            (DeliveryState::Cancelled, None)
        } else if now >= deadline {
            (DeliveryState::DeadLettered, None)
        } else {
            let wait = backoff(
                &self.settings,
                u32::try_from(attempt_number).unwrap_or(u32::MAX),
                random_u64(),
            );
            // The last retry happens at the deadline, not after it.
            (
                DeliveryState::Pending,
                Some(now.saturating_add(micros(wait)).min(deadline)),
            )
        };
        self.metrics.attempted(state);
        if !success {
            tracing::info!(
                delivery = %delivery.delivery_id,
                webhook = %delivery.webhook_id,
                attempt = attempt_number,
                http_status,
                state = state.as_str_name(),
                %error,
                "webhook delivery attempt failed"
            );
        }
        AttemptOutcome {
            attempt: StoredAttempt {
                attempt_id: Uuid::now_v7(),
                delivery_id: delivery.delivery_id,
                attempt_number,
                webhook_id: delivery.webhook_id,
                notification_id: delivery.notification_id,
                attempt_time_us: started_us,
                http_status,
                latency_us,
                success,
                error,
            },
            state: state as i32,
            next_attempt_us,
        }
    }

    /// Signs and POSTs the notification; the HTTP status.
    async fn post(
        &self,
        delivery_id: Uuid,
        webhook: &crate::store::StoredWebhook,
        stored: &crate::store::StoredNotification,
        now_us: i64,
    ) -> Result<u16, String> {
        let url = check_url(&webhook.url)?;
        let notification = convert::notification(stored).map_err(|e| e.to_string())?;
        let body =
            serde_json::to_vec(&notification_json(&notification)).map_err(|e| e.to_string())?;
        let mut secrets = vec![
            self.sealer
                .open(webhook.webhook_id, &webhook.secret)
                .map_err(|e| e.to_string())?,
        ];
        if let (Some(previous), Some(until)) =
            (&webhook.previous_secret, webhook.previous_secret_expire_us)
            && until > now_us
        {
            secrets.push(
                self.sealer
                    .open(webhook.webhook_id, previous)
                    .map_err(|e| e.to_string())?,
            );
        }
        let secrets: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
        let header = signature::sign(&secrets, now_us.div_euclid(1_000_000), &body);
        let headers = [
            (signature::HEADER, header),
            (DELIVERY_ID_HEADER, delivery_id.to_string()),
        ];
        self.client
            .post(&url, &headers, body)
            .await
            .map(|answer| answer.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_between_the_base_and_the_cap() {
        let settings = WorkerSettings {
            poll_interval: Duration::from_secs(1),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            max_age: Duration::from_secs(72 * 3600),
            lease: Duration::from_secs(30),
        };
        for attempt in 1..40 {
            let ceiling = Duration::from_secs(2u64.saturating_pow(attempt).min(3600));
            for random in [0, 1, 12_345_678, u64::MAX] {
                let wait = backoff(&settings, attempt, random);
                assert!(
                    wait >= settings.backoff_base && wait <= ceiling,
                    "{attempt}: {wait:?}"
                );
            }
        }
        assert_eq!(backoff(&settings, 1, 0), Duration::from_secs(1));
        assert!(backoff(&settings, 30, u64::MAX - 1) <= settings.backoff_cap);
    }
}
