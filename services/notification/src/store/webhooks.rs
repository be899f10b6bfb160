//! Webhooks, their deliveries and the delivery log: the types and the trait; both stores
//! implement it with the same statements (`sql.rs`).

use std::future::Future;

use cpis_mesh::outbox::NewOutboxEvent;
use uuid::Uuid;

use super::{StoreError, StoredNotification};

/// A webhook to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Its id (v7).
    pub webhook_id: Uuid,
    /// The authority registering it.
    pub authority: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Whether it receives escalations.
    pub escalation: bool,
    /// For people.
    pub description: String,
    /// The secret, sealed.
    pub secret: Vec<u8>,
    /// Now, microseconds.
    pub now_us: i64,
}

/// A webhook as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    /// Its id.
    pub webhook_id: Uuid,
    /// Its authority.
    pub authority: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Whether it receives escalations.
    pub escalation: bool,
    /// For people.
    pub description: String,
    /// The current secret, sealed.
    pub secret: Vec<u8>,
    /// The previous secret, sealed, while a rotation overlaps.
    pub previous_secret: Option<Vec<u8>>,
    /// Until when the previous secret signs too, microseconds.
    pub previous_secret_expire_us: Option<i64>,
    /// When registered, microseconds.
    pub create_time_us: i64,
    /// When the current secret was set, microseconds.
    pub secret_create_time_us: i64,
}

impl std::fmt::Debug for StoredWebhook {
    // Never the secrets, even sealed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredWebhook")
            .field("webhook_id", &self.webhook_id)
            .field("authority", &self.authority)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// Its id.
    pub delivery_id: Uuid,
    /// The authority.
    pub authority: String,
    /// The webhook.
    pub webhook_id: Uuid,
    /// The notification.
    pub notification_id: Uuid,
    /// `DeliveryState` as a number.
    pub state: i32,
    /// Attempts made.
    pub attempt_count: i32,
    /// When created, microseconds.
    pub create_time_us: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_us: Option<i64>,
    /// When the last attempt was made.
    pub last_attempt_us: Option<i64>,
    /// The last failure.
    pub last_error: String,
    /// When delivered, dead-lettered or cancelled.
    pub complete_time_us: Option<i64>,
}

/// One attempt as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttempt {
    /// The attempt's own id (v7, the log's order).
    pub attempt_id: Uuid,
    /// The delivery.
    pub delivery_id: Uuid,
    /// Its number, from 1.
    pub attempt_number: i32,
    /// The webhook.
    pub webhook_id: Uuid,
    /// The notification.
    pub notification_id: Uuid,
    /// When it started, microseconds.
    pub attempt_time_us: i64,
    /// The HTTP status, 0 without an answer.
    pub http_status: i32,
    /// How long it took, microseconds.
    pub latency_us: i64,
    /// A 2xx answer.
    pub success: bool,
    /// Why it failed.
    pub error: String,
}

/// A delivery a worker holds under a lease, with what it needs to attempt it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub delivery: StoredDelivery,
    /// The worker holding it.
    pub claimed_by: String,
    /// Until when.
    pub claimed_until_us: i64,
    /// Its webhook (None when it vanished).
    pub webhook: Option<StoredWebhook>,
    /// Its notification (None when it vanished).
    pub notification: Option<StoredNotification>,
}

/// What an attempt came to, and what happens next.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// The log row.
    pub attempt: StoredAttempt,
    /// The delivery's new state (`DeliveryState`).
    pub state: i32,
    /// When to try again, while pending.
    pub next_attempt_us: Option<i64>,
}

/// A read of an authority's deliveries, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// The authority.
    pub authority: String,
    /// Only this webhook's.
    pub webhook_id: Option<Uuid>,
    /// Only these states (empty: any).
    pub states: Vec<i32>,
    /// Only deliveries older than this one (the page token).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// A read of an authority's delivery log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    /// The authority.
    pub authority: String,
    /// Only this webhook's.
    pub webhook_id: Option<Uuid>,
    /// Only this delivery's.
    pub delivery_id: Option<Uuid>,
    /// Only attempts to deliver this notification.
    pub notification_id: Option<Uuid>,
    /// Only attempts older than this one (the page token).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// Webhooks and deliveries' storage.
pub trait WebhookStore: Clone + Send + Sync + 'static {
    /// Registers a webhook, with its audit events in the same transaction.
    fn register_webhook(
        &self,
        webhook: NewWebhook,
        audit: &[NewOutboxEvent],
    ) -> impl Future<Output = Result<StoredWebhook, StoreError>> + Send;

    /// The authority's registered webhooks after `after`, oldest first.
    fn list_webhooks(
        &self,
        authority: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredWebhook>, StoreError>> + Send;

    /// Replaces the secret; the current one becomes the previous one until
    /// `previous_expire_us` (None: dropped at once).
    fn rotate_webhook_secret(
        &self,
        authority: &str,
        webhook_id: Uuid,
        secret: Vec<u8>,
        previous_expire_us: Option<i64>,
        now_us: i64,
        audit: &[NewOutboxEvent],
    ) -> impl Future<Output = Result<StoredWebhook, StoreError>> + Send;

    /// Unregisters a webhook and cancels its pending deliveries; unregistering it again
    /// changes nothing. [`StoreError::WebhookNotFound`] when it never was the authority's.
    fn unregister_webhook(
        &self,
        authority: &str,
        webhook_id: Uuid,
        now_us: i64,
        audit: &[NewOutboxEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The authority's deliveries matching `query`, newest first.
    fn list_deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> impl Future<Output = Result<Vec<StoredDelivery>, StoreError>> + Send;

    /// The authority's attempts matching `query`, newest first.
    fn list_attempts(
        &self,
        query: &AttemptQuery,
    ) -> impl Future<Output = Result<Vec<StoredAttempt>, StoreError>> + Send;

    /// Leases up to `limit` pending deliveries due at `now_us` to `worker` until
    /// `claimed_until_us`; no two workers hold the same delivery.
    fn claim_deliveries(
        &self,
        worker: &str,
        now_us: i64,
        claimed_until_us: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ClaimedDelivery>, StoreError>> + Send;

    /// Logs an attempt and moves the delivery on, only while `claim` still holds it
    /// (fenced by worker and lease); whether it did.
    fn finish_attempt(
        &self,
        claim: &ClaimedDelivery,
        outcome: &AttemptOutcome,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The columns of a webhook row, in [`StoredWebhook`] order.
pub(crate) const WEBHOOK_COLUMNS: &str = "webhook_id, authority, url, escalation, description, \
     secret, previous_secret, previous_secret_expire_us, create_time_us, secret_create_time_us";

/// The columns of a delivery row, in [`StoredDelivery`] order.
pub(crate) const DELIVERY_COLUMNS: &str = "delivery_id, authority, webhook_id, notification_id, \
     state, attempt_count, create_time_us, next_attempt_us, last_attempt_us, last_error, \
     complete_time_us";

/// The columns of an attempt row, in [`StoredAttempt`] order.
pub(crate) const ATTEMPT_COLUMNS: &str = "attempt_id, delivery_id, attempt_number, webhook_id, \
     notification_id, attempt_time_us, http_status, latency_us, success, error";

/// Decodes a row of [`WEBHOOK_COLUMNS`].
macro_rules! decode_webhook {
    ($row:expr) => {{
        use sqlx::Row;
        let row = $row;
        Ok::<_, sqlx::Error>($crate::store::StoredWebhook {
            webhook_id: row.try_get(0)?,
            authority: row.try_get(1)?,
            url: row.try_get(2)?,
            escalation: row.try_get(3)?,
            description: row.try_get(4)?,
            secret: row.try_get(5)?,
            previous_secret: row.try_get(6)?,
            previous_secret_expire_us: row.try_get(7)?,
            create_time_us: row.try_get(8)?,
            secret_create_time_us: row.try_get(9)?,
        })
    }};
}
pub(crate) use decode_webhook;

/// Decodes a row of [`DELIVERY_COLUMNS`].
macro_rules! decode_delivery {
    ($row:expr) => {{
        use sqlx::Row;
        let row = $row;
        Ok::<_, sqlx::Error>($crate::store::StoredDelivery {
            delivery_id: row.try_get(0)?,
            authority: row.try_get(1)?,
            webhook_id: row.try_get(2)?,
            notification_id: row.try_get(3)?,
            state: row.try_get(4)?,
            attempt_count: row.try_get(5)?,
            create_time_us: row.try_get(6)?,
            next_attempt_us: row.try_get(7)?,
            last_attempt_us: row.try_get(8)?,
            last_error: row.try_get(9)?,
            complete_time_us: row.try_get(10)?,
        })
    }};
}
pub(crate) use decode_delivery;

/// Decodes a row of [`ATTEMPT_COLUMNS`].
macro_rules! decode_attempt {
    ($row:expr) => {{
        use sqlx::Row;
        let row = $row;
        Ok::<_, sqlx::Error>($crate::store::StoredAttempt {
            attempt_id: row.try_get(0)?,
            delivery_id: row.try_get(1)?,
            attempt_number: row.try_get(2)?,
            webhook_id: row.try_get(3)?,
            notification_id: row.try_get(4)?,
            attempt_time_us: row.try_get(5)?,
            http_status: row.try_get(6)?,
            latency_us: row.try_get(7)?,
            success: row.try_get(8)?,
            error: row.try_get(9)?,
        })
    }};
}
pub(crate) use decode_attempt;
