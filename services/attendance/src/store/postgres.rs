//! Attendances in Postgres, the store of a cluster.

use std::sync::Arc;

use cpis_mesh::db::{Warm, index_scan_pool};
use cpis_mesh::outbox::{NewOutboxEvent, PostgresEvents, enqueue_postgres, postgres_enqueue_sql};
use sqlx::FromRow as _;
use sqlx::postgres::{PgConnection, PgPool, PgRow};

use super::batch::{Batcher, Check};
use super::{
    AttendanceQuery, AttendanceStore, AttendanceSummary, FORGET_CHILDREN, NewAttendance,
    PURGE_REQUESTS, RECENT, RECENT_ATTENDANCES, REPLAY, RETAIN_CHILD, RecentRow, Recording,
    RequestKey, StoreError, StoredAttendance, insert_attendance, list_attendances,
    retain_child_sql, store_request, summary,
};

// Rows another replica's sweep holds are skipped, not waited for: that sweep deletes them.
const SWEEP: &str = "DELETE FROM attendances WHERE attendance_id IN \
    (SELECT a.attendance_id FROM attendance_children c \
     JOIN attendances a ON a.nhs_number = c.nhs_number \
     WHERE c.retain_until_us <= $1 \
     ORDER BY c.retain_until_us LIMIT $2 FOR UPDATE OF a SKIP LOCKED)";

/// A check's writes and its read in one statement, one round trip: the child's retention
/// (its one row, see `retain_child_sql`),
/// the attendance and its authorities (when kept), the outbox events, and the child's last
/// attendances. The final SELECT sees the database as it was before the statement, so the
/// new attendance joins it from the INSERT's RETURNING (the retention is another table).
/// The stored part is limited inside the UNION, so that the child
/// index is read newest first and stops after [`RECENT_ATTENDANCES`] rows (a frequent
/// attendee's whole history is never read). The limit is written into the text, not bound:
/// with a bound limit Postgres estimated a generic plan as reading a tenth of the child's
/// rows, so it planned the statement again on every execution (0.3 ms, more than running
/// it); with the constant it keeps one generic plan per connection after five executions.
fn check_sql() -> String {
    format!(
        "WITH retained AS ({}), kept AS ( \
            INSERT INTO attendances (attendance_id, nhs_number, organisation, site, \
                setting_type, setting_name, arrival_us, practitioner, flag_current, record_us) \
            SELECT $3, $1, $4, $5, $6, $7, $8, $9, $10, $11 WHERE $3::uuid IS NOT NULL \
            RETURNING attendance_id, arrival_us, organisation, site, setting_type, setting_name \
         ), authorities AS ( \
            INSERT INTO attendance_authorities (authority, attendance_id, arrival_us) \
            SELECT a.authority, kept.attendance_id, kept.arrival_us \
            FROM kept, unnest($12::text[]) AS a(authority) \
         ), events AS ({}) \
         SELECT arrival_us, organisation, site, setting_type, setting_name FROM ({}) AS r \
         ORDER BY arrival_us DESC, attendance_id DESC LIMIT {limit}",
        retain_child_sql("", "$1", "$2", "$3::uuid IS NOT NULL"),
        postgres_enqueue_sql(13),
        recent_and_kept_sql("$1", ""),
        limit = RECENT_ATTENDANCES,
    )
}

/// The child `child`'s last [`RECENT_ATTENDANCES`] stored attendances, newest first, and
/// the rows of `kept` (the statement's kept attendances) that `kept_filter` lets through:
/// the answer's attendances before their own ordering and limit. The stored part is limited
/// inside, so that the child index is read newest first and stops (see [`check_sql`]).
pub(super) fn recent_and_kept_sql(child: &str, kept_filter: &str) -> String {
    format!(
        "(SELECT attendance_id, arrival_us, organisation, site, setting_type, setting_name \
          FROM attendances WHERE nhs_number = {child} \
          ORDER BY arrival_us DESC, attendance_id DESC LIMIT {limit}) \
         UNION ALL \
         SELECT attendance_id, arrival_us, organisation, site, setting_type, setting_name \
         FROM kept {kept_filter}",
        limit = RECENT_ATTENDANCES,
    )
}

/// [`check_sql`], built once.
static CHECK_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(check_sql);

pub(super) async fn check_statement(
    conn: &mut PgConnection,
    r: &Recording<'_>,
) -> Result<Vec<AttendanceSummary>, StoreError> {
    let a = r.attendance;
    let query = sqlx::query(&CHECK_SQL)
        .bind(r.nhs_number)
        .bind(r.retain_until_us)
        .bind(a.map(|a| a.attendance_id))
        .bind(a.map(|a| a.organisation.as_str()))
        .bind(a.and_then(|a| a.site.as_deref()))
        .bind(a.map(|a| a.setting_type))
        .bind(a.map(|a| a.setting_name.as_str()))
        .bind(a.map(|a| a.arrival_us))
        .bind(a.map(|a| a.practitioner.as_slice()))
        .bind(a.map(|a| a.flag_current))
        .bind(a.map(|a| a.record_us))
        .bind(a.map_or(&[][..], |a| a.authorities.as_slice()));
    let rows = PostgresEvents::of(r.events)
        .bind(query)
        .try_map(|row: PgRow| RecentRow::from_row(&row))
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(summary).collect())
}

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PgAttendanceStore {
    pool: PgPool,
    /// The checks' own pool, whose connections plan with indexes only ([`index_scan_pool`]):
    /// the check's statement is prepared once per connection and its plan kept, so a plan
    /// made while the tables were young must still read a child's last attendances by its
    /// index. The checks without a request id keep its connections between them: one round
    /// trip per check instead of two (see [`Warm`]).
    checks: Arc<Warm>,
    /// The checks without a request id, recorded several to a statement while others are
    /// in flight ([`Batcher`]).
    batcher: Arc<Batcher>,
}

impl PgAttendanceStore {
    /// A store on `pool` (migrated). The checks open up to as many connections again.
    pub fn new(pool: PgPool) -> Self {
        let checks = Arc::new(Warm::of(index_scan_pool(&pool)));
        Self {
            batcher: Arc::new(Batcher::new(Arc::clone(&checks))),
            checks,
            pool,
        }
    }
}

impl AttendanceStore for PgAttendanceStore {
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
        enqueue_postgres(&mut tx, events).await?;
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
        match recording.request {
            // One statement is atomic on its own: no BEGIN and COMMIT round trips.
            // A connection whose statement failed, or whose check was cancelled part-way,
            // is not kept: it goes back to the pool, which makes it ready again or closes it.
            None => {
                self.batcher
                    .check(Check {
                        nhs_number: recording.nhs_number.to_owned(),
                        retain_until_us: recording.retain_until_us,
                        attendance: recording.attendance.cloned(),
                        events: recording.events.to_vec(),
                    })
                    .await
            }
            Some(key) => {
                let mut tx = self.checks.pool().begin().await?;
                let recent = check_statement(&mut tx, &recording).await?;
                store_request!(tx, key, answer(&recent));
                tx.commit().await?;
                Ok(recent)
            }
        }
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

#[cfg(test)]
mod tests {
    use cpis_mesh::db::{Database, DatabaseSettings};
    use sqlx::Connection as _;
    use uuid::Uuid;

    use super::*;

    /// A check of the child `nhs_number` at `arrival_us`, kept or not, with its audit event.
    async fn check(conn: &mut PgConnection, nhs_number: &str, arrival_us: i64, kept: bool) {
        let attendance = NewAttendance {
            attendance_id: Uuid::now_v7(),
            nhs_number: nhs_number.to_owned(),
            organisation: "RJ1".to_owned(),
            site: None,
            setting_type: 1,
            setting_name: "ED".to_owned(),
            arrival_us,
            practitioner: vec![1],
            flag_current: true,
            record_us: arrival_us,
            authorities: vec!["E09000007".to_owned()],
            retain_until_us: None,
        };
        let events = [NewOutboxEvent::new("audit", vec![1, 2, 3])];
        let recording = Recording {
            attendance: kept.then_some(&attendance),
            events: &events,
            nhs_number,
            request: None,
            retain_until_us: None,
        };
        check_statement(conn, &recording).await.unwrap();
    }

    /// A new database with attendance's tables: its URL and a pool on it.
    async fn migrated() -> (String, PgPool) {
        let url = cpis_mesh::testkit::postgres_database().await;
        let db = Database::connect(&DatabaseSettings::new(&url))
            .await
            .unwrap();
        db.migrate(&crate::MIGRATIONS).await.unwrap();
        let Database::Postgres(pool) = db else {
            unreachable!("a postgres:// URL")
        };
        (url, pool)
    }

    /// The plan the check's statement keeps on a connection (it is prepared once per
    /// connection, and the generic plan made after its fifth execution is kept), as
    /// `EXPLAIN` shows it.
    async fn kept_plan(conn: &mut PgConnection) -> String {
        let (name, parameters): (String, i32) = sqlx::query_as(
            "SELECT name, cardinality(parameter_types) FROM pg_prepared_statements \
             WHERE statement LIKE 'WITH retained AS%'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let nulls = vec!["NULL"; usize::try_from(parameters).unwrap()].join(", ");
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}({nulls})"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        lines.join("\n")
    }

    /// Checks a child on `conn` while the tables are nearly empty (the plan is made then),
    /// then gives it 2,000 attendances from another connection (no plan is remade for
    /// that): the plan `conn` keeps.
    async fn plan_after_the_tables_grew(pool: &PgPool, conn: &mut PgConnection) -> String {
        for i in 0..8 {
            check(conn, "9990000018", 100_000 + i, true).await;
        }
        sqlx::query(
            "INSERT INTO attendances (attendance_id, nhs_number, organisation, site, \
                setting_type, setting_name, arrival_us, practitioner, flag_current, record_us) \
             SELECT gen_random_uuid(), '9990000018', 'RJ1', NULL, 1, 'ED', 200000 + g, \
                '\\x01'::bytea, true, 200000 + g \
             FROM generate_series(1, 2000) AS g",
        )
        .execute(pool)
        .await
        .unwrap();
        kept_plan(conn).await
    }

    /// A check's plan made on young tables still reads the child's last attendances from
    /// its index, newest first, and stops at the answer's 25: on the checks' connections
    /// ([`index_scan_pool`]) it is an index scan, where an ordinary connection's plan
    /// (kept too, and shown here so that this test shows what it guards against) is a bitmap
    /// scan of all the child's rows and a sort of them, at every check for as long as the
    /// connection lives.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_plan_made_on_young_tables_reads_the_childs_last_attendances_by_the_index() {
        let (url, pool) = migrated().await;
        let pool = &pool;

        let checks = index_scan_pool(pool);
        let plan = plan_after_the_tables_grew(pool, &mut checks.acquire().await.unwrap()).await;
        assert!(
            plan.contains("Index Scan using attendances_child_arrival on attendances"),
            "{plan}"
        );
        // In the index's order (the tie on arrival sorted within it): read until the 25th.
        assert!(
            plan.contains("Presorted Key: attendances.arrival_us"),
            "{plan}"
        );
        assert!(!plan.contains("Bitmap Heap Scan on attendances"), "{plan}");
        assert!(!plan.contains("Seq Scan on attendances"), "{plan}");

        sqlx::query("DELETE FROM attendances")
            .execute(pool)
            .await
            .unwrap();
        let mut ordinary = PgConnection::connect(&url).await.unwrap();
        let plan = plan_after_the_tables_grew(pool, &mut ordinary).await;
        assert!(plan.contains("Bitmap Heap Scan on attendances"), "{plan}");
    }

    /// Postgres plans the check's statement for a connection once (a generic plan after
    /// its first five executions), not again for every check. (With the limit bound as a
    /// parameter, the generic plan lost on the benchmark's database, a million attendances
    /// without statistics, but not on a small one like this: what this guards is that
    /// nothing else in the statement keeps it from having one plan.)
    #[tokio::test(flavor = "multi_thread")]
    async fn a_connection_keeps_one_plan_of_the_check() {
        let (url, _pool) = migrated().await;
        let mut conn = PgConnection::connect(&url).await.unwrap();
        // A frequent attendee (more than the answer shows), then other children.
        for i in 0..40 {
            check(&mut conn, "9990000018", 100_000 + i, true).await;
        }
        for i in 0..10 {
            check(
                &mut conn,
                &format!("99900001{i:02}"),
                200_000 + i,
                i % 2 == 0,
            )
            .await;
        }
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
             WHERE statement LIKE 'WITH retained AS%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            (generic, custom),
            (45, 5),
            "five custom plans, then the generic one every time"
        );
    }

    /// A kept check of `nhs_number` at `arrival_us`: its attendance and its audit event.
    fn kept(nhs_number: &str, arrival_us: i64) -> (NewAttendance, Vec<NewOutboxEvent>) {
        let attendance = NewAttendance {
            attendance_id: Uuid::now_v7(),
            nhs_number: nhs_number.to_owned(),
            organisation: "RJ1".to_owned(),
            site: Some("A&E".to_owned()),
            setting_type: 1,
            setting_name: format!("ED {arrival_us}"),
            arrival_us,
            practitioner: vec![7; 40],
            flag_current: true,
            record_us: arrival_us,
            authorities: vec!["E09000007".to_owned(), "E09000008".to_owned()],
            retain_until_us: None,
        };
        let events = vec![NewOutboxEvent::new(
            "audit",
            arrival_us.to_be_bytes().to_vec(),
        )];
        (attendance, events)
    }

    async fn record(
        store: &PgAttendanceStore,
        (attendance, events): &(NewAttendance, Vec<NewOutboxEvent>),
    ) -> Result<Vec<AttendanceSummary>, StoreError> {
        store
            .check(
                Recording {
                    attendance: Some(attendance),
                    events,
                    nhs_number: &attendance.nhs_number,
                    request: None,
                    retain_until_us: attendance.retain_until_us,
                },
                |_| Vec::new(),
            )
            .await
    }

    async fn count(pool: &PgPool, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    }

    #[tokio::test]
    async fn checks_arriving_together_share_statements_and_each_gets_its_own_answer() {
        let (_url, pool) = migrated().await;
        let store = PgAttendanceStore::new(pool.clone());
        // Eight children, three checks each, all at once.
        let checks: Vec<_> = (0..24_i64)
            .map(|i| kept(&format!("99900000{:02}", i % 8), 1_000 + i))
            .collect();
        let answers =
            futures_util::future::join_all(checks.iter().map(|c| record(&store, c))).await;

        let statements = store.batcher.statements();
        assert!(statements <= 12, "24 checks in {statements} statements");
        for (check, answer) in checks.iter().zip(answers) {
            let answer = answer.expect("recorded");
            let own = check.0.arrival_us;
            assert!(
                answer.iter().any(|a| a.arrival_us == own),
                "the check's own attendance in its answer: {own} in {answer:?}"
            );
            assert!(
                answer
                    .windows(2)
                    .all(|w| w[0].arrival_us >= w[1].arrival_us),
                "newest first"
            );
            assert!(
                answer.iter().all(|a| a.arrival_us % 8 == own % 8),
                "only the child's own attendances"
            );
            assert!(answer.len() <= 3);
        }
        assert_eq!(count(&pool, "SELECT count(*) FROM attendances").await, 24);
        assert_eq!(
            count(&pool, "SELECT count(*) FROM attendance_authorities").await,
            48
        );
        assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 24);
        assert_eq!(
            count(&pool, "SELECT count(*) FROM attendance_children").await,
            8
        );
        for child in 0..8 {
            let recent = store
                .recent(&format!("99900000{child:02}"), 25)
                .await
                .unwrap();
            assert_eq!(recent.len(), 3, "child {child}");
        }
    }

    #[tokio::test]
    async fn a_check_that_fails_in_a_batch_fails_alone() {
        let (_url, pool) = migrated().await;
        let store = PgAttendanceStore::new(pool.clone());
        let first = kept("9990000001", 1_000);
        record(&store, &first).await.unwrap();
        let statements = store.batcher.statements();

        let mut checks: Vec<_> = (2..6_i64)
            .map(|i| kept(&format!("999000000{i}"), 1_000 + i))
            .collect();
        // The third reuses an attendance id already stored: a unique violation.
        checks[2].0.attendance_id = first.0.attendance_id;
        let answers =
            futures_util::future::join_all(checks.iter().map(|c| record(&store, c))).await;

        assert_eq!(
            store.batcher.statements() - statements,
            1 + 4,
            "the batch, then each check on its own"
        );
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer.is_err(), i == 2, "check {i}: {answer:?}");
        }
        assert_eq!(count(&pool, "SELECT count(*) FROM attendances").await, 4);
        assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 4);
    }

    #[tokio::test]
    async fn a_check_whose_caller_left_while_it_waited_is_not_recorded() {
        let (_url, pool) = migrated().await;
        let store = PgAttendanceStore::new(pool.clone());
        let gone = kept("9990000001", 1_000);
        let stays = kept("9990000002", 2_000);
        {
            // Queued (its batch's runner has not run yet on this thread), then dropped.
            let mut queued = std::pin::pin!(record(&store, &gone));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(queued.as_mut().poll(&mut cx).is_pending());
        }
        let answer = record(&store, &stays).await.unwrap();
        assert_eq!(answer.len(), 1);
        assert_eq!(count(&pool, "SELECT count(*) FROM attendances").await, 1);
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM attendances WHERE nhs_number = '9990000001'"
            )
            .await,
            0
        );
        assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 1);
    }
}
