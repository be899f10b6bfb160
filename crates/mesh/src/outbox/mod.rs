//! The transactional outbox: events a service must send to another (its audit events, the
//! attendance service's notifications) are written in the same database transaction as the
//! change they describe, then shipped by a relay, at least once, in creation order, with
//! backoff on failure.
//!
//! - [`POSTGRES_SQL`] / [`SQLITE_SQL`]: the `outbox` table, embedded by each service as one
//!   of its own migrations, and [`POSTGRES_HOT_SQL`] then
//!   [`POSTGRES_EVENT_ID_NOT_UNIQUE_SQL`] / [`SQLITE_EVENT_ID_NOT_UNIQUE_SQL`] as later ones;
//! - [`NewOutboxEvent`], [`enqueue_postgres`], [`enqueue_sqlite`]: writing in the caller's
//!   transaction, with the current span's trace context;
//! - [`OutboxStore`] ([`PostgresOutbox`], [`SqliteOutbox`], [`store`]): claiming under a
//!   lease, confirming, releasing with backoff, depth and age;
//! - [`OutboxSink`] ([`AuditSink`], [`NotificationSink`]): delivering a batch;
//! - [`OutboxRelay`]: the loop that ties them, with [`OutboxMetrics`];
//! - [`OutboxWriter`]: group commit for events with no transaction of their own (audits of
//!   reads).
//!
//! Destinations are idempotent by event id, so a batch shipped twice (a relay killed after
//! delivering and before confirming) does no harm. See `docs/outbox.md`.

mod backoff;
mod cadence;
mod event;
mod metrics;
mod postgres;
mod relay;
mod schema;
mod sink;
mod sqlite;
mod store;
mod vacuum;
mod writer;

pub use backoff::Backoff;
pub use event::{NewOutboxEvent, OutboxEvent};
pub use metrics::OutboxMetrics;
pub use postgres::{PostgresEvents, PostgresOutbox, enqueue_postgres, postgres_enqueue_sql};
pub use relay::{
    DEFAULT_BATCH_SIZE, DEFAULT_LINGER, DEFAULT_POLL_INTERVAL, OutboxNotifier, OutboxRelay,
    RelaySettings,
};
pub use schema::{
    POSTGRES_EVENT_ID_NOT_UNIQUE_SQL, POSTGRES_HOT_SQL, POSTGRES_SQL,
    SQLITE_EVENT_ID_NOT_UNIQUE_SQL, SQLITE_SQL,
};
pub use sink::{AuditSink, NotificationSink, OutboxSink, SinkError};
pub use sqlite::{SqliteOutbox, enqueue_sqlite};
pub use store::{Claim, DestinationStats, Lease, OutboxStore, Retry, store};
pub use vacuum::{VACUUM_AFTER_ROWS, VACUUM_GAP};
pub use writer::OutboxWriter;

/// The destination of events for the audit service's `Append`.
pub const AUDIT: &str = "audit";
/// The destination of events for the notification service's `Publish`.
pub const NOTIFICATION: &str = "notification";

/// An outbox problem.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database refused or failed a statement.
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    /// A producer's event id is not a UUID.
    #[error("event id `{0}` is not a UUID")]
    EventId(String),
    /// A time or duration does not fit the table's columns.
    #[error("outbox time out of range: {0}")]
    Time(String),
    /// The shared transaction of an [`OutboxWriter`] failed (the cause, as text: every
    /// caller in it hears it).
    #[error("outbox group commit: {0}")]
    Batch(String),
    /// The [`OutboxWriter`]'s task is gone (the process is stopping).
    #[error("the outbox writer has stopped")]
    WriterStopped,
}
