//! The relay's side of the outbox table, one trait over both dialects.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use super::{NewOutboxEvent, OutboxError, OutboxEvent, PostgresOutbox, SqliteOutbox};
use crate::db::Database;

/// A relay's hold on the rows it claimed: until `claimed_until` no other relay claims them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The relay that claimed the rows.
    pub claimed_by: String,
    /// When the lease expires. Also the fence of a release: a row claimed again after
    /// this lease expired carries another expiry, so a late release leaves it alone.
    pub claimed_until: OffsetDateTime,
}

/// A batch claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The lease on the rows.
    pub lease: Lease,
    /// The rows, in creation order; empty when nothing was due.
    pub events: Vec<OutboxEvent>,
}

/// A claimed row whose delivery failed, and how long it waits before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The row.
    pub seq: i64,
    /// The wait (backoff) before it is due again.
    pub delay: Duration,
}

/// What is waiting for one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DestinationStats {
    /// Rows not yet confirmed (due, backing off or claimed).
    pub depth: u64,
    /// How long the oldest of them has waited; zero when there is none.
    pub oldest_age: Duration,
}

/// The outbox table as the relay sees it. Every method is one statement (or one short
/// transaction) of its own, never the producer's transaction.
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// Writes events in a transaction of their own: for events that record no other change
    /// (e.g. the audit event of a read or a refused call).
    fn enqueue<'a>(
        &'a self,
        events: &'a [NewOutboxEvent],
    ) -> BoxFuture<'a, Result<(), OutboxError>>;

    /// Claims up to `limit` rows of `destination` in creation order for `relay_id`: rows
    /// that are due (`next_attempt_at` passed) and not leased (`claimed_until` NULL or
    /// passed). They stay leased for `lease`.
    fn claim<'a>(
        &'a self,
        destination: &'a str,
        limit: usize,
        relay_id: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, OutboxError>>;

    /// Deletes rows their destination confirmed; returns how many were deleted. Not fenced
    /// by the lease: once delivered, a row is done whoever holds it.
    fn confirm<'a>(&'a self, seqs: &'a [i64]) -> BoxFuture<'a, Result<u64, OutboxError>>;

    /// Returns rows whose delivery failed: attempts + 1, due again after each row's delay,
    /// `last_error` set, lease cleared. Only rows still held under `lease` change; returns
    /// how many did.
    fn release<'a>(
        &'a self,
        lease: &'a Lease,
        retries: &'a [Retry],
        error: &'a str,
    ) -> BoxFuture<'a, Result<u64, OutboxError>>;

    /// Depth and age of the oldest row of `destination`.
    fn stats<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<DestinationStats, OutboxError>>;
}

/// The store over `database`, in its dialect.
pub fn store(database: &Database) -> Arc<dyn OutboxStore> {
    match database {
        Database::Postgres(pool) => Arc::new(PostgresOutbox::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteOutbox::new(pool.clone())),
    }
}

/// A duration in whole milliseconds, as the SQL takes it.
pub(super) fn millis(duration: Duration) -> Result<i64, OutboxError> {
    i64::try_from(duration.as_millis()).map_err(|_| OutboxError::Time(format!("{duration:?}")))
}

/// `attempts` as stored (never negative) as a count.
pub(super) fn attempts(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}
