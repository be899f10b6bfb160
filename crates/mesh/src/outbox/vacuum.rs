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

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;

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
    running: AtomicBool,
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
            running: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    /// Counts `rows` deleted, and vacuums when that makes it due.
    pub(super) async fn deleted(&self, rows: u64) {
        let total = self.deleted.fetch_add(rows, Ordering::Relaxed) + rows;
        if total < self.after_rows || !self.gap_passed() {
            return;
        }
        // One vacuum at a time: another destination's loop may be confirming too.
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.deleted.store(0, Ordering::Relaxed);
        let started = Instant::now();
        // SKIP_LOCKED: never wait behind a lock another session holds on the table.
        // TRUNCATE false: giving the empty tail pages back would take the table's ACCESS
        // EXCLUSIVE lock, and every producer's commit would wait behind it (checks stalled
        // for tens of milliseconds); the pages are reused by the next inserts anyway.
        match sqlx::raw_sql("VACUUM (SKIP_LOCKED, TRUNCATE false) outbox")
            .execute(&self.pool)
            .await
        {
            Ok(_) => tracing::debug!(rows = total, took = ?started.elapsed(), "outbox vacuumed"),
            Err(error) => {
                tracing::warn!(%error, "cannot vacuum the outbox; leaving it to autovacuum")
            }
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Instant::now());
        }
        self.running.store(false, Ordering::Release);
    }

    fn gap_passed(&self) -> bool {
        self.last
            .lock()
            .map(|last| last.is_none_or(|at| at.elapsed() >= self.gap))
            .unwrap_or(true)
    }
}
