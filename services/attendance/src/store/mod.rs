//! Where attendances live: one trait, a Postgres and an SQLite implementation sharing
//! their SQL (sqlx's `$n` placeholders work on both).

use std::future::Future;

use cpis_mesh::outbox::{NewOutboxEvent, OutboxError};
use uuid::Uuid;

mod batch;
pub mod postgres;
pub mod sqlite;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// Another call with the same request id (and user) recorded its check first.
    #[error("the request id was used by a check recorded meanwhile")]
    RequestReplayed,
}

/// A check's request id, for answering its retries as the first call was answered.
#[derive(Debug, Clone)]
pub struct RequestKey {
    /// The id the caller chose.
    pub request_id: Uuid,
    /// The user who checked: ids are the user's own.
    pub user_id: String,
    /// Now, microseconds since the epoch.
    pub now_us: i64,
    /// Answers stored at or before this (microseconds) have expired.
    pub expired_us: i64,
}

/// Everything one check writes, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Recording<'a> {
    /// The attendance, when the child is kept.
    pub attendance: Option<&'a NewAttendance>,
    /// Its outbox events (the audit event, the notices).
    pub events: &'a [NewOutboxEvent],
    /// The child whose last attendances ([`RECENT_ATTENDANCES`]) the answer shows.
    pub nhs_number: &'a str,
    /// The request id, when the caller gave one.
    pub request: Option<&'a RequestKey>,
    /// Until when the child's attendances (those stored before, and this one) are kept:
    /// `None` while a flag without an end date retains them, now when none does any more
    /// (see [`crate::retention`]).
    pub retain_until_us: Option<i64>,
}

/// An attendance ready to store.
#[derive(Debug, Clone)]
pub struct NewAttendance {
    /// Its id.
    pub attendance_id: Uuid,
    /// The child's NHS number (or the pregnant woman's).
    pub nhs_number: String,
    /// The care setting's organisation (ODS code).
    pub organisation: String,
    /// The site, when given.
    pub site: Option<String>,
    /// `CareSettingType` as a number.
    pub setting_type: i32,
    /// The setting's name as the caller gave it.
    pub setting_name: String,
    /// Arrival, microseconds since the epoch.
    pub arrival_us: i64,
    /// The prost-encoded `Principal` who checked.
    pub practitioner: Vec<u8>,
    /// Whether a flag was current.
    pub flag_current: bool,
    /// When recorded, microseconds since the epoch.
    pub record_us: i64,
    /// The authorities holding a flag on the child (each once).
    pub authorities: Vec<String>,
    /// Until when it is kept (microseconds since the epoch); `None` while a flag without
    /// an end date retains it.
    pub retain_until_us: Option<i64>,
}

/// One of a child's attendances, as a check shows it: when, where, which setting type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceSummary {
    /// Arrival, microseconds since the epoch.
    pub arrival_us: i64,
    /// The care setting's organisation.
    pub organisation: String,
    /// The site, when given.
    pub site: Option<String>,
    /// `CareSettingType` as a number.
    pub setting_type: i32,
    /// The setting's name.
    pub setting_name: String,
}

/// An attendance as stored, as ListAttendances shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttendance {
    /// Its id.
    pub attendance_id: Uuid,
    /// The child's NHS number.
    pub nhs_number: String,
    /// Where, when, which setting type.
    pub summary: AttendanceSummary,
    /// The prost-encoded `Principal` who checked.
    pub practitioner: Vec<u8>,
    /// Whether a flag was current.
    pub flag_current: bool,
    /// When recorded, microseconds since the epoch.
    pub record_us: i64,
}

/// A read of one authority's attendances, newest arrival first.
#[derive(Debug, Clone)]
pub struct AttendanceQuery {
    /// The authority: only attendances of children it held a flag for.
    pub authority: String,
    /// Only this child's.
    pub nhs_number: Option<String>,
    /// Only arrivals at or after this (microseconds).
    pub start_us: Option<i64>,
    /// Only arrivals before this (microseconds).
    pub end_us: Option<i64>,
    /// Only attendances after this one in the order (the page token's position).
    pub after: Option<(i64, Uuid)>,
    /// At most this many.
    pub limit: i64,
}

/// The attendance store.
pub trait AttendanceStore: Clone + Send + Sync + 'static {
    /// In ONE transaction: stores `attendance` (when the child is kept) and enqueues
    /// `events` in the outbox. Nothing is written when any part fails.
    fn record(
        &self,
        attendance: Option<&NewAttendance>,
        events: &[NewOutboxEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// In ONE transaction: stores the check's attendance (when kept) and events, reads the
    /// child's last attendances, and, for a request id, stores the encoded answer that
    /// `answer` makes of them. Returns those attendances. Fails with
    /// [`StoreError::RequestReplayed`] when a check with the same request id and user was
    /// recorded meanwhile (this one then wrote nothing).
    fn check<F>(
        &self,
        recording: Recording<'_>,
        answer: F,
    ) -> impl Future<Output = Result<Vec<AttendanceSummary>, StoreError>> + Send
    where
        F: FnOnce(&[AttendanceSummary]) -> Vec<u8> + Send;

    /// The encoded answer stored for `key`'s request id and user, unless expired.
    fn replay(
        &self,
        key: &RequestKey,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Deletes the stored answers of request ids created at or before `expired_us`;
    /// returns how many.
    fn purge_requests(
        &self,
        expired_us: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes at most `batch` attendances whose retention ended at or before `now_us`
    /// (with their authorities); returns how many. Safe to run from several replicas at
    /// once: each deletes what is still there, and none deletes anything twice.
    fn sweep(
        &self,
        now_us: i64,
        batch: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The child's last `limit` attendances at any setting, newest arrival first.
    fn recent(
        &self,
        nhs_number: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<AttendanceSummary>, StoreError>> + Send;

    /// One authority's attendances as `query` asks, newest arrival first.
    fn list(
        &self,
        query: &AttendanceQuery,
    ) -> impl Future<Output = Result<Vec<StoredAttendance>, StoreError>> + Send;
}

pub(crate) const INSERT_ATTENDANCE: &str = "INSERT INTO attendances \
    (attendance_id, nhs_number, organisation, site, setting_type, setting_name, arrival_us, \
     practitioner, flag_current, record_us) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// The child's retention, one row: created when an attendance is kept (`kept`, an SQL
/// boolean), updated when the child already has one, and never created for a child the
/// service keeps nothing of (an unflagged child leaves no trace). Written only when it
/// changes (`IS [NOT] DISTINCT FROM` is NULL-safe on both databases): a row already holding
/// the value is not even tried, since an upsert locks the row it conflicts with until
/// commit, and checks of the same child would then wait for each other's commit. The rows
/// come from `from` (empty for one row of parameters), each with the NHS number `child`
/// and the time `until`; at most one per child, since an upsert may not touch a row twice.
pub(crate) fn retain_child_sql(from: &str, child: &str, until: &str, kept: &str) -> String {
    format!(
        "INSERT INTO attendance_children (nhs_number, retain_until_us) \
         SELECT {child}, {until} {from} \
         WHERE ({kept} OR EXISTS (SELECT 1 FROM attendance_children WHERE nhs_number = {child})) \
         AND NOT EXISTS (SELECT 1 FROM attendance_children WHERE nhs_number = {child} \
             AND retain_until_us IS NOT DISTINCT FROM {until}) \
         ON CONFLICT (nhs_number) DO UPDATE SET retain_until_us = excluded.retain_until_us \
         WHERE attendance_children.retain_until_us IS DISTINCT FROM excluded.retain_until_us"
    )
}

/// [`retain_child_sql`] for one child: `$1` the NHS number, `$2` the time, `$3` kept.
pub(crate) static RETAIN_CHILD: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| retain_child_sql("", "$1", "$2", "$3"));

// After the sweep deleted their attendances: the rows of children with none left whose
// time has come (a check that kept a new attendance meanwhile moved its child's time on).
pub(crate) const FORGET_CHILDREN: &str = "DELETE FROM attendance_children \
    WHERE retain_until_us <= $1 AND NOT EXISTS \
    (SELECT 1 FROM attendances a WHERE a.nhs_number = attendance_children.nhs_number)";

pub(crate) const INSERT_AUTHORITY: &str =
    "INSERT INTO attendance_authorities (authority, attendance_id, arrival_us) VALUES ($1, $2, $3)";

/// How many of the child's attendances a check answers with.
pub const RECENT_ATTENDANCES: i64 = 25;

pub(crate) const RECENT: &str = "SELECT arrival_us, organisation, site, setting_type, setting_name \
    FROM attendances WHERE nhs_number = $1 \
    ORDER BY arrival_us DESC, attendance_id DESC LIMIT $2";

// The filters are NULL when unset; the page position compares as a row value, which the
// authority index serves as one backward range scan.
pub(crate) const LIST: &str = "SELECT a.attendance_id, a.nhs_number, a.arrival_us, a.organisation, \
    a.site, a.setting_type, a.setting_name, a.practitioner, a.flag_current, a.record_us \
    FROM attendance_authorities x JOIN attendances a ON a.attendance_id = x.attendance_id \
    WHERE x.authority = $1 \
    AND ($2 IS NULL OR a.nhs_number = $2) \
    AND ($3 IS NULL OR x.arrival_us >= $3) \
    AND ($4 IS NULL OR x.arrival_us < $4) \
    AND ($5 IS NULL OR (x.arrival_us, x.attendance_id) < ($5, $6)) \
    ORDER BY x.arrival_us DESC, x.attendance_id DESC LIMIT $7";

/// A row of [`LIST`].
pub(crate) type ListRow = (
    Uuid,
    String,
    i64,
    String,
    Option<String>,
    i32,
    String,
    Vec<u8>,
    bool,
    i64,
);

pub(crate) fn stored(
    (
        attendance_id,
        nhs_number,
        arrival_us,
        organisation,
        site,
        setting_type,
        setting_name,
        practitioner,
        flag_current,
        record_us,
    ): ListRow,
) -> StoredAttendance {
    StoredAttendance {
        attendance_id,
        nhs_number,
        summary: AttendanceSummary {
            arrival_us,
            organisation,
            site,
            setting_type,
            setting_name,
        },
        practitioner,
        flag_current,
        record_us,
    }
}

/// Runs [`LIST`] for `$query` on `$pool`.
macro_rules! list_attendances {
    ($pool:expr, $query:expr) => {{
        let q = $query;
        let rows: Vec<$crate::store::ListRow> = sqlx::query_as($crate::store::LIST)
            .bind(&q.authority)
            .bind(q.nhs_number.as_deref())
            .bind(q.start_us)
            .bind(q.end_us)
            .bind(q.after.map(|(at, _)| at))
            .bind(q.after.map(|(_, id)| id))
            .bind(q.limit)
            .fetch_all($pool)
            .await?;
        rows.into_iter().map($crate::store::stored).collect()
    }};
}
pub(crate) use list_attendances;

pub(crate) const DELETE_EXPIRED_REQUEST: &str =
    "DELETE FROM check_requests WHERE request_id = $1 AND user_id = $2 AND created_us <= $3";

pub(crate) const INSERT_REQUEST: &str = "INSERT INTO check_requests (request_id, user_id, response, created_us) VALUES ($1, $2, $3, $4)";

pub(crate) const PURGE_REQUESTS: &str = "DELETE FROM check_requests WHERE created_us <= $1";

pub(crate) const REPLAY: &str = "SELECT response FROM check_requests WHERE request_id = $1 AND user_id = $2 AND created_us > $3";

/// Runs [`AttendanceStore::check`] on `$pool` with `$enqueue` (the outbox's writer).
macro_rules! check_in_transaction {
    ($pool:expr, $enqueue:path, $recording:expr, $answer:expr) => {{
        let r: $crate::store::Recording<'_> = $recording;
        let mut tx = $pool.begin().await?;
        sqlx::query(&$crate::store::RETAIN_CHILD)
            .bind(r.nhs_number)
            .bind(r.retain_until_us)
            .bind(r.attendance.is_some())
            .execute(&mut *tx)
            .await?;
        if let Some(attendance) = r.attendance {
            $crate::store::insert_attendance!(tx, attendance);
        }
        $enqueue(&mut tx, r.events).await?;
        let rows: Vec<$crate::store::RecentRow> = sqlx::query_as($crate::store::RECENT)
            .bind(r.nhs_number)
            .bind($crate::store::RECENT_ATTENDANCES)
            .fetch_all(&mut *tx)
            .await?;
        let recent: Vec<$crate::store::AttendanceSummary> =
            rows.into_iter().map($crate::store::summary).collect();
        if let Some(key) = r.request {
            $crate::store::store_request!(tx, key, ($answer)(&recent));
        }
        tx.commit().await?;
        Ok(recent)
    }};
}
pub(crate) use check_in_transaction;

/// Stores a check's encoded answer under its request id, in the check's transaction `$tx`;
/// returns [`StoreError::RequestReplayed`] from the enclosing function when a concurrent
/// check with the same request id stored one first.
macro_rules! store_request {
    ($tx:expr, $key:expr, $answer:expr) => {{
        let key: &$crate::store::RequestKey = $key;
        sqlx::query($crate::store::DELETE_EXPIRED_REQUEST)
            .bind(key.request_id)
            .bind(&key.user_id)
            .bind(key.expired_us)
            .execute(&mut *$tx)
            .await?;
        let stored = sqlx::query($crate::store::INSERT_REQUEST)
            .bind(key.request_id)
            .bind(&key.user_id)
            .bind($answer)
            .bind(key.now_us)
            .execute(&mut *$tx)
            .await;
        match stored {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err($crate::store::StoreError::RequestReplayed);
            }
            other => {
                other?;
            }
        }
    }};
}
pub(crate) use store_request;

/// A row of [`RECENT`].
pub(crate) type RecentRow = (i64, String, Option<String>, i32, String);

pub(crate) fn summary(
    (arrival_us, organisation, site, setting_type, setting_name): RecentRow,
) -> AttendanceSummary {
    AttendanceSummary {
        arrival_us,
        organisation,
        site,
        setting_type,
        setting_name,
    }
}

/// Binds [`INSERT_ATTENDANCE`]'s parameters and runs it on a connection.
macro_rules! insert_attendance {
    ($conn:expr, $a:expr) => {{
        let a = $a;
        sqlx::query($crate::store::INSERT_ATTENDANCE)
            .bind(a.attendance_id)
            .bind(&a.nhs_number)
            .bind(&a.organisation)
            .bind(a.site.as_deref())
            .bind(a.setting_type)
            .bind(&a.setting_name)
            .bind(a.arrival_us)
            .bind(&a.practitioner)
            .bind(a.flag_current)
            .bind(a.record_us)
            .execute(&mut *$conn)
            .await?;
        for authority in &a.authorities {
            sqlx::query($crate::store::INSERT_AUTHORITY)
                .bind(authority)
                .bind(a.attendance_id)
                .bind(a.arrival_us)
                .execute(&mut *$conn)
                .await?;
        }
    }};
}
pub(crate) use insert_attendance;
