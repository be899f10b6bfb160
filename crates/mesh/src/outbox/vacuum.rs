//! Keeping a Postgres outbox lean where autovacuum does not.
//!
//! Every delivered row is deleted, so a busy outbox leaves thousands of dead rows a minute.
//! Autovacuum normally clears them. Where it is off or falls behind, they pile up at the head
//! of the `(destination, seq)` index that every claim walks and in the table's pages: on a
//! machine with autovacuum off, a claim went from 0.1 ms to 0.6 ms within an hour and the
//! table grew to 170 MB for a few hundred live rows. The relay therefore vacuums its own
//! outbox after every [`VACUUM_AFTER_ROWS`] deleted rows, at most once per [`VACUUM_GAP`].
//! A role that does not own the table gets a warning from Postgres, not an error: the relay
//! goes on, and the table is left to autovacuum.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use tokio::sync::Mutex;

/// Deleted rows after which the outbox is vacuumed.
pub const VACUUM_AFTER_ROWS: u64 = 20_000;

/// The least time between two vacuums of one outbox by one relay.
pub const VACUUM_GAP: Duration = Duration::from_secs(10);

/// When to vacuum, and doing it.
#[derive(Debug)]
pub(super) struct Vacuum {
    pool: PgPool,
    after_rows: u64,
    gap: Duration,
    deleted: AtomicU64,
    /// When the last vacuum ended; held while one runs, so that the loops of two
    /// destinations confirming at once do not both vacuum.
    last: Mutex<Option<Instant>>,
}

impl Vacuum {
    /// Vacuums through `pool` after `after_rows` deleted rows, at most once per `gap`.
    pub(super) fn new(pool: PgPool, after_rows: u64, gap: Duration) -> Self {
        Self {
            pool,
            after_rows: after_rows.max(1),
            gap,
            deleted: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// Counts `rows` deleted, and vacuums when that makes it due.
    pub(super) async fn deleted(&self, rows: u64) {
        let total = self.deleted.fetch_add(rows, Ordering::Relaxed) + rows;
        if total < self.after_rows {
            return;
        }
        // Another loop is vacuuming: nothing to add.
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < self.gap) {
            return;
        }
        self.deleted.store(0, Ordering::Relaxed);
        let started = Instant::now();
        // SKIP_LOCKED: never wait behind a lock another session holds on the table.
        // TRUNCATE false: giving the empty tail pages back would take the table's ACCESS
        // EXCLUSIVE lock, and every producer's commit would wait behind it (checks stalled
        // for tens of milliseconds); the pages are reused by the next inserts anyway.
        // PARALLEL 0: once two of the outbox's indexes pass a few hundred kilobytes,
        // Postgres starts two worker processes to vacuum them, and starting them costs more
        // than the work (30 ms against 10 ms without, on a 2-core machine under load).
        match sqlx::raw_sql("VACUUM (SKIP_LOCKED, TRUNCATE false, PARALLEL 0) outbox")
            .execute(&self.pool)
            .await
        {
            Ok(_) => tracing::debug!(rows = total, took = ?started.elapsed(), "outbox vacuumed"),
            Err(error) => {
                tracing::warn!(%error, "cannot vacuum the outbox; leaving it to autovacuum")
            }
        }
        *last = Some(Instant::now());
    }
}
