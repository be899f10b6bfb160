//! Keeping a Postgres outbox lean where autovacuum does not.
//!
//! Every delivered row is deleted, so a busy outbox leaves thousands of dead rows a minute.
//! Autovacuum normally clears them. Where it is off or falls behind, they pile up at the head
//! of the `(destination, seq)` index that every claim walks and in the table's pages: on a
//! machine with autovacuum off, a claim went from 0.1 ms to 0.6 ms within an hour and the
//! table grew to 170 MB for a few hundred live rows. The relay therefore vacuums its own
//! outbox once it holds [`VACUUM_AFTER_ROWS`] dead rows, looking at most once per
//! [`VACUUM_GAP`], and only while it deletes rows itself.
//!
//! The dead rows are counted by Postgres (`pg_stat_get_dead_tuples`), not by the relay: a
//! count kept in the process started again from zero at every restart, and each of several
//! replicas saw only its own share. A flag registry restarted every few thousand checks never
//! vacuumed at all: its outbox reached 600,000 dead rows and 500 MB, and each confirmation
//! took 12 ms instead of 0.3.
//!
//! A role that does not own the table gets a warning from Postgres, not an error: the relay
//! goes on, and the table is left to autovacuum.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use tokio::sync::Mutex;

/// Dead rows (as Postgres counts them) from which the outbox is vacuumed.
pub const VACUUM_AFTER_ROWS: u64 = 20_000;

/// The least time between two looks at the dead rows (and so between two vacuums) by one
/// relay.
pub const VACUUM_GAP: Duration = Duration::from_secs(10);

/// When to vacuum, and doing it.
#[derive(Debug)]
pub(super) struct Vacuum {
    pool: PgPool,
    after_rows: u64,
    gap: Duration,
    /// When the dead rows were last looked at; held while they are (and while a vacuum
    /// runs), so that the loops of two destinations confirming at once do not both look.
    last: Mutex<Option<Instant>>,
}

impl Vacuum {
    /// Vacuums through `pool` from `after_rows` dead rows, looking at most once per `gap`.
    pub(super) fn new(pool: PgPool, after_rows: u64, gap: Duration) -> Self {
        Self {
            pool,
            after_rows: after_rows.max(1),
            gap,
            last: Mutex::new(None),
        }
    }

    /// After the relay deleted rows: vacuums when the table holds enough dead ones.
    pub(super) async fn deleted(&self) {
        // Another loop is looking or vacuuming: nothing to add.
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < self.gap) {
            return;
        }
        *last = Some(Instant::now());
        // Postgres's count, from every session that deleted rows (other replicas, earlier
        // runs of this process), a second or so behind the latest deletes.
        let dead =
            sqlx::query_scalar::<_, i64>("SELECT pg_stat_get_dead_tuples('outbox'::regclass)")
                .fetch_one(&self.pool)
                .await;
        let dead = match dead {
            Ok(dead) => u64::try_from(dead).unwrap_or(0),
            Err(error) => {
                tracing::debug!(%error, "cannot count the outbox's dead rows");
                return;
            }
        };
        if dead < self.after_rows {
            return;
        }
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
            Ok(_) => tracing::debug!(dead, took = ?started.elapsed(), "outbox vacuumed"),
            Err(error) => {
                tracing::warn!(%error, "cannot vacuum the outbox; leaving it to autovacuum")
            }
        }
        *last = Some(Instant::now());
    }
}
