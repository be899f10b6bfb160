//! Where the inboxes live: one trait, a Postgres and an SQLite implementation.
//!
//! A notification's place in its authority's inbox is a sequence number, consecutive per
//! authority and assigned so that notifications become visible in sequence order (see the
//! migrations): reading "after N" never misses a notification that commits later.

use std::future::Future;

use cpis_mesh::outbox::{NewOutboxEvent, OutboxError};
use uuid::Uuid;

pub mod postgres;
mod sql;
pub mod sqlite;
mod webhook_sql;
mod webhooks;

pub use webhooks::{
    AttemptOutcome, AttemptQuery, ClaimedDelivery, DeliveryQuery, NewWebhook, StoredAttempt,
    StoredDelivery, StoredWebhook, WebhookStore,
};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Some of the notifications asked for are not in the authority's inbox.
    #[error("no notification {0} in this authority's inbox")]
    NotFound(Uuid),
    /// The webhook is not one of the authority's (registered) webhooks.
    #[error("no webhook {0} registered by this authority")]
    WebhookNotFound(Uuid),
    /// The outbox (audit events) failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// A notification ready to store.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// The id the service gave it.
    pub notification_id: Uuid,
    /// The producer's event id (the idempotency key); None for an escalation.
    pub event_id: Option<Uuid>,
    /// The authority whose inbox receives it.
    pub authority: String,
    /// `NotificationKind` as a number.
    pub kind: i32,
    /// The prost-encoded `Notification`.
    pub body: Vec<u8>,
    /// When the event happened, microseconds since the epoch.
    pub occur_time_us: i64,
    /// For an attendance: what repeated attendances of the same child at the same setting
    /// share (folding); None for other kinds.
    pub fold_key: Option<String>,
    /// For an attendance: when it is escalated unless acknowledged first.
    pub escalate_at_us: Option<i64>,
}

impl NewNotification {
    /// Its fold key and event id when it may be folded into an open notification: an
    /// attendance (it has a fold key) from a producer (it has an event id), with folding on
    /// (a window above zero).
    pub(crate) fn foldable(&self, fold_window_us: i64) -> Option<(&str, Uuid)> {
        match (&self.fold_key, self.event_id) {
            (Some(key), Some(event_id)) if fold_window_us > 0 => Some((key.as_str(), event_id)),
            _ => None,
        }
    }
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotification {
    /// The authority whose inbox holds it.
    pub authority: String,
    /// Its place in that inbox, from 1.
    pub seq: i64,
    /// Its id.
    pub notification_id: Uuid,
    /// The producer's event id.
    pub event_id: Option<Uuid>,
    /// `NotificationKind` as a number.
    pub kind: i32,
    /// The prost-encoded `Notification` as stored.
    pub body: Vec<u8>,
    /// When it was stored, microseconds.
    pub create_time_us: i64,
    /// When the (first) event happened, microseconds.
    pub occur_time_us: i64,
    /// How many events it stands for (more than 1 when folded).
    pub occurrence_count: i32,
    /// When the latest folded event happened, microseconds; None when not folded.
    pub last_occur_time_us: Option<i64>,
    /// When it was acknowledged, microseconds, and by whom (a prost-encoded `Principal`).
    pub acknowledgement: Option<(i64, Vec<u8>)>,
}

/// What a publish did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The notifications stored by this call, in the order given, as they were stored
    /// (a later event of the batch may have been folded into one: see `folded`).
    pub stored: Vec<StoredNotification>,
    /// The notifications a new event was folded into by this call, as they are after it
    /// (once each, even when several events were folded into one).
    pub folded: Vec<StoredNotification>,
    /// How many events were folded into a notification instead of stored as one.
    pub folded_events: usize,
    /// How many events were already stored (by event id) and ignored.
    pub duplicates: usize,
}

/// A read of one inbox.
#[derive(Debug, Clone)]
pub struct InboxQuery {
    /// The authority.
    pub authority: String,
    /// Only notifications after this place (0: from the start).
    pub after_seq: i64,
    /// Only notifications not yet acknowledged.
    pub unacknowledged_only: bool,
    /// Only these kinds (empty: every kind).
    pub kinds: Vec<i32>,
    /// At most this many.
    pub limit: u32,
}

/// The inboxes' storage.
pub trait NotificationStore: Clone + Send + Sync + 'static {
    /// Stores the notifications whose event id is new, all or nothing, each at the next
    /// place of its authority's inbox with a delivery to each of its webhooks; `now_us` is
    /// the create time. An attendance whose fold key matches an unacknowledged notification
    /// first occurring at most `fold_window_us` away is folded into it instead (0: never).
    fn publish(
        &self,
        notifications: Vec<NewNotification>,
        now_us: i64,
        fold_window_us: i64,
    ) -> impl Future<Output = Result<Published, StoreError>> + Send;

    /// The authority's notifications matching `query`, in inbox order.
    fn list(
        &self,
        query: &InboxQuery,
    ) -> impl Future<Output = Result<Vec<StoredNotification>, StoreError>> + Send;

    /// Acknowledges the authority's notifications `ids` (the first acknowledgement is kept)
    /// and returns them in the order given; nothing changes, and [`StoreError::NotFound`]
    /// is returned, when one of them is not in the authority's inbox. The `audit` events
    /// are written to the outbox in the same transaction.
    fn acknowledge(
        &self,
        authority: &str,
        ids: &[Uuid],
        acknowledged_by: &[u8],
        now_us: i64,
        audit: &[NewOutboxEvent],
    ) -> impl Future<Output = Result<Vec<StoredNotification>, StoreError>> + Send;

    /// The place of the authority's latest notification (0 when its inbox is empty).
    fn last_seq(&self, authority: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Up to `limit` attendance notifications due for escalation at `now_us`.
    fn due_escalations(
        &self,
        now_us: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Uuid>, StoreError>> + Send;

    /// Escalates notification `id` if it is still due and unacknowledged (an atomic
    /// update: once, whichever replica comes first): stores `escalation(original)` in the
    /// same inbox, with deliveries to the authority's escalation webhooks, and returns it.
    fn escalate<F>(
        &self,
        id: Uuid,
        now_us: i64,
        escalation: F,
    ) -> impl Future<Output = Result<Option<StoredNotification>, StoreError>> + Send
    where
        F: FnOnce(&StoredNotification) -> Option<NewNotification> + Send;
}

/// Stores one notification at the next place of its authority's inbox, unless its event id
/// is known; the same text in both dialects. Binds: authority, notification id, event id,
/// kind, body, occur time, create time, fold key, escalation time.
pub(crate) const INSERT: &str = "INSERT INTO notifications \
     (authority, seq, notification_id, event_id, kind, body, occur_time_us, create_time_us, \
      fold_key, escalate_at_us) \
     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9 \
     FROM notifications WHERE authority = $1 \
     ON CONFLICT (event_id) DO NOTHING \
     RETURNING seq";

/// The columns every read returns, in [`StoredNotification`] order.
pub(crate) const COLUMNS: &str = "authority, seq, notification_id, event_id, kind, body, \
     create_time_us, acknowledge_time_us, acknowledged_by, occur_time_us, occurrence_count, \
     last_occur_time_us";

/// Acknowledges one notification unless it was already (and so ends its wait for
/// escalation). Binds: time, who, authority, id.
pub(crate) const ACKNOWLEDGE: &str = "UPDATE notifications \
     SET acknowledge_time_us = $1, acknowledged_by = $2, escalate_at_us = NULL \
     WHERE authority = $3 AND notification_id = $4 AND acknowledge_time_us IS NULL";

/// The `SELECT` of [`NotificationStore::list`], the same text in both dialects.
pub(crate) fn list_query<'a, DB>(query: &InboxQuery) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = sqlx::QueryBuilder::<DB>::new(format!(
        "SELECT {COLUMNS} FROM notifications WHERE authority = "
    ));
    sql.push_bind(query.authority.clone())
        .push(" AND seq > ")
        .push_bind(query.after_seq);
    if query.unacknowledged_only {
        sql.push(" AND acknowledge_time_us IS NULL");
    }
    if !query.kinds.is_empty() {
        sql.push(" AND kind IN (");
        let mut list = sql.separated(", ");
        for kind in &query.kinds {
            list.push_bind(*kind);
        }
        list.push_unseparated(")");
    }
    sql.push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(query.limit));
    sql
}

/// Decodes a row of [`COLUMNS`].
macro_rules! decode_row {
    ($row:expr) => {{
        use sqlx::Row;
        let row = $row;
        let acknowledge_time: Option<i64> = row.try_get(7)?;
        let acknowledged_by: Option<Vec<u8>> = row.try_get(8)?;
        Ok::<_, sqlx::Error>($crate::store::StoredNotification {
            authority: row.try_get(0)?,
            seq: row.try_get(1)?,
            notification_id: row.try_get(2)?,
            event_id: row.try_get(3)?,
            kind: row.try_get(4)?,
            body: row.try_get(5)?,
            create_time_us: row.try_get(6)?,
            acknowledgement: acknowledge_time.zip(acknowledged_by),
            occur_time_us: row.try_get(9)?,
            occurrence_count: row.try_get(10)?,
            last_occur_time_us: row.try_get(11)?,
        })
    }};
}
pub(crate) use decode_row;
