//! Attendances in SQLite, the embedded default on one machine. A check only writes in
//! its transaction (it reads nothing first), so a plain `BEGIN` becomes the writer safely.

use cpis_mesh::outbox::{NewOutboxEvent, enqueue_sqlite};
use sqlx::sqlite::SqlitePool;

use super::{
    AttendanceQuery, AttendanceStore, AttendanceSummary, FORGET_CHILDREN, NewAttendance,
    PURGE_REQUESTS, RECENT, REPLAY, RETAIN_CHILD, RecentRow, Recording, RequestKey, StoreError,
    StoredAttendance, check_in_transaction, insert_attendance, list_attendances, summary,
};

// One writer at a time on SQLite: the batch is whatever is due when the sweep runs.
const SWEEP: &str = "DELETE FROM attendances WHERE attendance_id IN \
    (SELECT a.attendance_id FROM attendance_children c \
     JOIN attendances a ON a.nhs_number = c.nhs_number \
     WHERE c.retain_until_us <= $1 \
     ORDER BY c.retain_until_us LIMIT $2)";

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteAttendanceStore {
    pool: SqlitePool,
}

impl SqliteAttendanceStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

impl AttendanceStore for SqliteAttendanceStore {
    async fn record(
        &self,
        attendance: Option<&NewAttendance>,
        events: &[NewOutboxEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(attendance) = attendance {
            sqlx::query(&RETAIN_CHILD)
                .bind(&attendance.nhs_number)
                .bind(attendance.retain_until_us)
                .bind(true)
                .execute(&mut *tx)
                .await?;
            insert_attendance!(tx, attendance);
        }
        enqueue_sqlite(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn check<F>(
        &self,
        recording: Recording<'_>,
        answer: F,
    ) -> Result<Vec<AttendanceSummary>, StoreError>
    where
        F: FnOnce(&[AttendanceSummary]) -> Vec<u8> + Send,
    {
        check_in_transaction!(self.pool, enqueue_sqlite, recording, answer)
    }

    async fn replay(&self, key: &RequestKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(REPLAY)
            .bind(key.request_id)
            .bind(&key.user_id)
            .bind(key.expired_us)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn purge_requests(&self, expired_us: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE_REQUESTS)
            .bind(expired_us)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn sweep(&self, now_us: i64, batch: i64) -> Result<u64, StoreError> {
        // The attendance's authorities go with it (ON DELETE CASCADE).
        let done = sqlx::query(SWEEP)
            .bind(now_us)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        sqlx::query(FORGET_CHILDREN)
            .bind(now_us)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn recent(
        &self,
        nhs_number: &str,
        limit: i64,
    ) -> Result<Vec<AttendanceSummary>, StoreError> {
        let rows: Vec<RecentRow> = sqlx::query_as(RECENT)
            .bind(nhs_number)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(summary).collect())
    }

    async fn list(&self, query: &AttendanceQuery) -> Result<Vec<StoredAttendance>, StoreError> {
        Ok(list_attendances!(&self.pool, query))
    }
}
