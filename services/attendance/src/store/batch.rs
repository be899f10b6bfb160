//! Checks that arrive together, recorded together (Postgres).
//!
//! Much of what a check costs Postgres is paid once per statement, not once per check: the
//! executor's start, the round trip, waking the backend and the commit's bookkeeping. Two
//! checks in one statement cost the machine about a quarter less each, four about half
//! (docs/performance.md, "Where to look next", item 14). So the checks without a request id
//! queue here, and each of at most [`RUNNING`] runners takes what is queued, up to [`MOST`]
//! checks of different children, as one statement. There is no timer: a check on an idle
//! service goes at once, alone, as before; batches grow only while statements are in flight,
//! as Postgres's own group commit does.
//!
//! One statement is one transaction: a batch is recorded whole or not at all. If its
//! statement fails, each of its checks is recorded again on its own, so that a check fails
//! only for its own fault. A check whose caller has gone while it waited (a deadline, a
//! cancelled call) is not recorded. A runner is a task of its own, so that a caller who
//! goes while its batch is in flight does not take the others' answers with it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cpis_mesh::db::Warm;
use cpis_mesh::outbox::{NewOutboxEvent, PostgresEvents, postgres_enqueue_sql};
use sqlx::FromRow as _;
use sqlx::postgres::PgRow;
use tokio::sync::oneshot;
use tracing::Instrument as _;
use uuid::Uuid;

use super::postgres::{check_statement, recent_and_kept_sql};
use super::{
    AttendanceSummary, NewAttendance, RECENT_ATTENDANCES, RecentRow, Recording, StoreError,
    retain_child_sql, summary,
};

/// Statements in flight at once. Two keep both cores of a small machine busy while one waits
/// for its commit's flush; more would leave fewer checks to each batch.
const RUNNING: usize = 2;

/// The most checks in one statement.
const MOST: usize = 16;

/// A check without a request id, owned, waiting for its batch.
#[derive(Debug)]
pub(super) struct Check {
    /// The child.
    pub nhs_number: String,
    /// Until when the child's attendances are kept (see `Recording`).
    pub retain_until_us: Option<i64>,
    /// The attendance, when the child is kept.
    pub attendance: Option<NewAttendance>,
    /// Its outbox events.
    pub events: Vec<NewOutboxEvent>,
}

struct Queued {
    check: Check,
    answer: oneshot::Sender<Result<Vec<AttendanceSummary>, StoreError>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    running: usize,
}

/// The queue of checks and its runners.
pub(super) struct Batcher {
    state: Mutex<State>,
    checks: Arc<Warm>,
    /// Statements run so far (shared or alone), for tests.
    statements: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// Batches on the checks' connections.
    pub(super) fn new(checks: Arc<Warm>) -> Self {
        Self {
            state: Mutex::default(),
            checks,
            statements: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Statements run so far.
    #[cfg(test)]
    pub(super) fn statements(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records `check` with whatever else is queued; its child's last attendances.
    pub(super) async fn check(
        self: &Arc<Self>,
        check: Check,
    ) -> Result<Vec<AttendanceSummary>, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.queue.push_back(Queued { check, answer });
            let start = state.running < RUNNING;
            if start {
                state.running += 1;
            }
            start
        };
        if start {
            let batcher = Arc::clone(self);
            tokio::spawn(
                batcher
                    .run()
                    .instrument(tracing::debug_span!("attendance.checks")),
            );
        }
        answered
            .await
            .unwrap_or(Err(StoreError::Database(sqlx::Error::WorkerCrashed)))
    }

    /// Takes batches from the queue until it is empty.
    async fn run(self: Arc<Self>) {
        let mut runner = Runner {
            batcher: Arc::clone(&self),
            counted: true,
        };
        loop {
            let batch = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let batch = take(&mut state.queue);
                if batch.is_empty() {
                    state.running -= 1;
                    runner.counted = false;
                    return;
                }
                batch
            };
            self.record(batch).await;
        }
    }

    async fn record(&self, batch: Vec<Queued>) {
        let (checks, answers): (Vec<Check>, Vec<_>) =
            batch.into_iter().map(|q| (q.check, q.answer)).unzip();
        if checks.len() > 1 {
            match self.statement(&checks).await {
                Ok(recent) => {
                    for (answer, recent) in answers.into_iter().zip(recent) {
                        let _ = answer.send(Ok(recent));
                    }
                    return;
                }
                Err(e) => tracing::warn!(
                    checks = checks.len(),
                    error = %e,
                    "a batch of checks failed: recording each on its own"
                ),
            }
        }
        for (check, answer) in checks.iter().zip(answers) {
            let _ = answer.send(self.alone(check).await);
        }
    }

    /// `check` alone, with the check's own statement.
    async fn alone(&self, check: &Check) -> Result<Vec<AttendanceSummary>, StoreError> {
        self.statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let recording = Recording {
            attendance: check.attendance.as_ref(),
            events: &check.events,
            nhs_number: &check.nhs_number,
            request: None,
            retain_until_us: check.retain_until_us,
        };
        let mut conn = self.checks.acquire().await?;
        let recent = check_statement(&mut conn, &recording).await?;
        conn.done();
        Ok(recent)
    }

    /// One statement for `checks` (of different children): each one's last attendances.
    async fn statement(&self, checks: &[Check]) -> Result<Vec<Vec<AttendanceSummary>>, StoreError> {
        self.statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let query = Columns::of(checks).bind(sqlx::query(&BATCH_SQL));
        let mut conn = self.checks.acquire().await?;
        let rows = PostgresEvents::of(checks.iter().flat_map(|c| &c.events))
            .bind(query)
            .try_map(|row: PgRow| {
                let n: i64 = sqlx::Row::try_get(&row, 5)?;
                Ok((n, RecentRow::from_row(&row)?))
            })
            .fetch_all(&mut *conn)
            .await?;
        conn.done();
        let mut recent: Vec<Vec<AttendanceSummary>> = checks.iter().map(|_| Vec::new()).collect();
        for (n, row) in rows {
            let slot = usize::try_from(n - 1)
                .ok()
                .and_then(|i| recent.get_mut(i))
                .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
            slot.push(summary(row));
        }
        Ok(recent)
    }
}

/// A runner, counted in `State::running` until it returns. Should a batch panic, the runner
/// it ends is no longer counted, so that the next check starts another.
struct Runner {
    batcher: Arc<Batcher>,
    counted: bool,
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.counted {
            let mut state = self.batcher.state.lock().unwrap_or_else(|e| e.into_inner());
            state.running -= 1;
        }
    }
}

/// The checks' columns, as [`batch_sql`]'s arrays `$1` to `$13`: the attendance's columns
/// NULL for a check that keeps none, and the authorities flattened, each with its check's
/// number.
#[derive(Default)]
struct Columns<'c> {
    nhs_number: Vec<&'c str>,
    retain_until_us: Vec<Option<i64>>,
    attendance_id: Vec<Option<Uuid>>,
    organisation: Vec<Option<&'c str>>,
    site: Vec<Option<&'c str>>,
    setting_type: Vec<Option<i32>>,
    setting_name: Vec<Option<&'c str>>,
    arrival_us: Vec<Option<i64>>,
    practitioner: Vec<Option<&'c [u8]>>,
    flag_current: Vec<Option<bool>>,
    record_us: Vec<Option<i64>>,
    authority_of: Vec<i64>,
    authority: Vec<&'c str>,
}

impl<'c> Columns<'c> {
    fn of(checks: &'c [Check]) -> Self {
        let mut columns = Self::default();
        for (n, check) in (1_i64..).zip(checks) {
            let a: Option<&NewAttendance> = check.attendance.as_ref();
            columns.nhs_number.push(&check.nhs_number);
            columns.retain_until_us.push(check.retain_until_us);
            columns.attendance_id.push(a.map(|a| a.attendance_id));
            columns
                .organisation
                .push(a.map(|a| a.organisation.as_str()));
            columns.site.push(a.and_then(|a| a.site.as_deref()));
            columns.setting_type.push(a.map(|a| a.setting_type));
            columns
                .setting_name
                .push(a.map(|a| a.setting_name.as_str()));
            columns.arrival_us.push(a.map(|a| a.arrival_us));
            columns
                .practitioner
                .push(a.map(|a| a.practitioner.as_slice()));
            columns.flag_current.push(a.map(|a| a.flag_current));
            columns.record_us.push(a.map(|a| a.record_us));
            for authority in a.map_or(&[][..], |a| a.authorities.as_slice()) {
                columns.authority_of.push(n);
                columns.authority.push(authority);
            }
        }
        columns
    }

    /// Binds the arrays, in [`batch_sql`]'s order.
    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'c: 'q,
    {
        query
            .bind(self.nhs_number)
            .bind(self.retain_until_us)
            .bind(self.attendance_id)
            .bind(self.organisation)
            .bind(self.site)
            .bind(self.setting_type)
            .bind(self.setting_name)
            .bind(self.arrival_us)
            .bind(self.practitioner)
            .bind(self.flag_current)
            .bind(self.record_us)
            .bind(self.authority_of)
            .bind(self.authority)
    }
}

/// The next batch: from the front of the queue, up to [`MOST`] checks of different children
/// (a second check of a child waits for the next batch, in its place); checks whose caller
/// has gone are dropped.
fn take(queue: &mut VecDeque<Queued>) -> Vec<Queued> {
    let mut batch: Vec<Queued> = Vec::new();
    let mut left = VecDeque::new();
    while let Some(queued) = queue.pop_front() {
        if queued.answer.is_closed() {
            continue;
        }
        let child = &queued.check.nhs_number;
        if !batch.iter().any(|b| &b.check.nhs_number == child) {
            batch.push(queued);
        } else {
            left.push_back(queued);
        }
        if batch.len() == MOST {
            break;
        }
    }
    left.append(queue);
    *queue = left;
    batch
}

/// The check's statement (`check_sql`) for several checks of different children, their
/// columns as arrays: each child's retention, the kept attendances and their authorities,
/// every check's outbox events, and each check's child's last attendances, each row ending
/// with the number of its check: its place in the arrays (`n`, from 1).
fn batch_sql() -> String {
    format!(
        "WITH input AS ( \
            SELECT * FROM unnest($1::text[], $2::int8[], $3::uuid[], $4::text[], $5::text[], \
                $6::int4[], $7::text[], $8::int8[], $9::bytea[], $10::bool[], $11::int8[]) \
            WITH ORDINALITY AS i(nhs_number, retain_until_us, attendance_id, organisation, \
                site, setting_type, setting_name, arrival_us, practitioner, flag_current, \
                record_us, n) \
         ), retained AS ({}), kept AS ( \
            INSERT INTO attendances (attendance_id, nhs_number, organisation, site, \
                setting_type, setting_name, arrival_us, practitioner, flag_current, record_us) \
            SELECT attendance_id, nhs_number, organisation, site, setting_type, setting_name, \
                arrival_us, practitioner, flag_current, record_us \
            FROM input WHERE attendance_id IS NOT NULL ORDER BY n \
            RETURNING attendance_id, arrival_us, organisation, site, setting_type, setting_name \
         ), authorities AS ( \
            INSERT INTO attendance_authorities (authority, attendance_id, arrival_us) \
            SELECT a.authority, kept.attendance_id, kept.arrival_us \
            FROM unnest($12::int8[], $13::text[]) AS a(n, authority) \
            JOIN input i ON i.n = a.n JOIN kept ON kept.attendance_id = i.attendance_id \
         ), events AS ({}) \
         SELECT r.arrival_us, r.organisation, r.site, r.setting_type, r.setting_name, i.n \
         FROM input i CROSS JOIN LATERAL ( \
            SELECT * FROM ({}) AS u ORDER BY arrival_us DESC, attendance_id DESC LIMIT {limit} \
         ) AS r \
         ORDER BY i.n, r.arrival_us DESC, r.attendance_id DESC",
        retain_child_sql(
            "FROM input i",
            "i.nhs_number",
            "i.retain_until_us",
            "i.attendance_id IS NOT NULL"
        ),
        postgres_enqueue_sql(14),
        recent_and_kept_sql("i.nhs_number", "WHERE kept.attendance_id = i.attendance_id"),
        limit = RECENT_ATTENDANCES,
    )
}

/// [`batch_sql`], built once.
static BATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(batch_sql);
