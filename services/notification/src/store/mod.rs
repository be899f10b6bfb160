//! Where the inboxes live: one trait, a Postgres and an SQLite implementation.
//!
//! A notification's place in its authority's inbox is a sequence number, consecutive per
//! authority and assigned so that notifications become visible in sequence order (see the
//! migrations): reading "after N" never misses a notification that commits later.

use std::future::Future;

use cpis_mesh::outbox::{NewOutboxEvent, OutboxError};
use uuid::Uuid;

pub mod postgres;
pub mod sqlite;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Some of the notifications asked for are not in the authority's inbox.
    #[error("no notification {0} in this authority's inbox")]
    NotFound(Uuid),
    /// The outbox (audit events) failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// A notification ready to store.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// The id the service gave it.
    pub notification_id: Uuid,
    /// The producer's event id (the idempotency key).
    pub event_id: Uuid,
    /// The authority whose inbox receives it.
    pub authority: String,
    /// `NotificationKind` as a number.
    pub kind: i32,
    /// The prost-encoded `Notification`.
    pub body: Vec<u8>,
    /// When the event happened, microseconds since the epoch.
    pub occur_time_us: i64,
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
    /// When it was acknowledged, microseconds, and by whom (a prost-encoded `Principal`).
    pub acknowledgement: Option<(i64, Vec<u8>)>,
}

/// What a publish did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The notifications stored by this call, in the order given.
    pub stored: Vec<StoredNotification>,
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
    /// place of its authority's inbox; `now_us` is the create time.
    fn publish(
        &self,
        notifications: Vec<NewNotification>,
        now_us: i64,
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
}

/// Stores one notification at the next place of its authority's inbox, unless its event id
/// is known; the same text in both dialects. Binds: authority, notification id, event id,
/// kind, body, occur time, create time.
pub(crate) const INSERT: &str = "INSERT INTO notifications \
     (authority, seq, notification_id, event_id, kind, body, occur_time_us, create_time_us) \
     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7 \
     FROM notifications WHERE authority = $1 \
     ON CONFLICT (event_id) DO NOTHING \
     RETURNING seq";

/// The columns every read returns, in [`StoredNotification`] order.
pub(crate) const COLUMNS: &str = "authority, seq, notification_id, event_id, kind, body, \
     create_time_us, acknowledge_time_us, acknowledged_by";

/// Acknowledges one notification unless it was already. Binds: time, who, authority, id.
pub(crate) const ACKNOWLEDGE: &str = "UPDATE notifications \
     SET acknowledge_time_us = $1, acknowledged_by = $2 \
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
        })
    }};
}
pub(crate) use decode_row;
