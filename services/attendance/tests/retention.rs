//! Retention over time, on both stores: every check sets until when the child's
//! attendances are kept, and the sweep deletes those whose time has come, in batches, with
//! their authorities, however many sweeps run at once. Time is given explicitly ("now").

mod support;

use cpis_attendance::MIGRATIONS;
use cpis_attendance::retention::{RetentionSweep, SweepMetrics};
use cpis_attendance::store::postgres::PgAttendanceStore;
use cpis_attendance::store::sqlite::SqliteAttendanceStore;
use cpis_attendance::store::{AttendanceStore, NewAttendance, Recording};
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_proto::common::CareSettingType;
use support::{CAMDEN, nhs};
use uuid::Uuid;

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$case(&cpis_mesh::testkit::postgres_database().await).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "attendance")).await;
            }
        }
    )*};
}

on_both_stores!(
    the_sweep_deletes_what_is_due_in_batches_with_its_authorities,
    a_check_sets_the_retention_of_all_the_childs_attendances,
    sweeps_running_at_once_delete_each_attendance_once,
    attendances_are_deleted_once_no_flag_retains_them,
    retention_kept_per_attendance_before_migration_5_is_kept_per_child_after,
    an_unflagged_childs_check_leaves_no_retention_row,
    authorities_are_keyed_by_attendance_after_their_migration,
);

const DAY_US: i64 = 86_400 * 1_000_000;

async fn open(url: &str) -> Database {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(&MIGRATIONS).await.unwrap();
    db
}

/// Sweeps `db` at `now_us` in batches of `batch`; returns how many were deleted and what
/// the metrics counted.
async fn sweep_at(db: &Database, now_us: i64, batch: u32) -> (u64, u64) {
    async fn run<S: AttendanceStore>(store: S, now_us: i64, batch: u32) -> (u64, u64) {
        let sweep = RetentionSweep {
            store,
            batch,
            interval: std::time::Duration::from_secs(3600),
            metrics: SweepMetrics::default(),
        };
        let deleted = sweep.sweep(now_us).await.unwrap();
        (deleted, sweep.metrics.swept())
    }
    match db {
        Database::Postgres(pool) => run(PgAttendanceStore::new(pool.clone()), now_us, batch).await,
        Database::Sqlite(pool) => {
            run(SqliteAttendanceStore::new(pool.clone()), now_us, batch).await
        }
    }
}

async fn count(db: &Database, sql: &str) -> i64 {
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Runs `f` on `db`'s store.
async fn record(db: &Database, attendance: &NewAttendance, retain_until_us: Option<i64>) {
    let recording = Recording {
        attendance: Some(attendance),
        events: &[],
        nhs_number: &attendance.nhs_number,
        request: None,
        retain_until_us,
    };
    match db {
        Database::Postgres(pool) => {
            PgAttendanceStore::new(pool.clone())
                .check(recording, |_| Vec::new())
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            SqliteAttendanceStore::new(pool.clone())
                .check(recording, |_| Vec::new())
                .await
                .unwrap();
        }
    }
}

fn attendance(number: &str, arrival_us: i64, retain_until_us: Option<i64>) -> NewAttendance {
    NewAttendance {
        attendance_id: Uuid::now_v7(),
        nhs_number: number.to_owned(),
        organisation: "RAL".to_owned(),
        site: None,
        setting_type: 1,
        setting_name: "ED".to_owned(),
        arrival_us,
        practitioner: vec![1],
        flag_current: false,
        record_us: arrival_us,
        authorities: vec!["E09000007".to_owned(), "E09000019".to_owned()],
        retain_until_us,
    }
}

async fn the_sweep_deletes_what_is_due_in_batches_with_its_authorities(url: &str) {
    let db = open(url).await;
    // Five children due by 200, one open, one due later.
    for (i, until) in [100, 150, 200, 200, 120].into_iter().enumerate() {
        let child = nhs(u32::try_from(i).unwrap() + 1);
        record(&db, &attendance(&child, 10, Some(until)), Some(until)).await;
    }
    record(&db, &attendance(&nhs(20), 10, None), None).await;
    record(&db, &attendance(&nhs(21), 10, Some(1_000)), Some(1_000)).await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        14
    );

    assert_eq!(sweep_at(&db, 99, 2).await, (0, 0), "nothing due yet");
    assert_eq!(
        sweep_at(&db, 200, 2).await,
        (5, 5),
        "three batches: 2, 2, 1"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attendances").await, 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        4,
        "their authorities went with them"
    );
    assert_eq!(
        sweep_at(&db, 200, 2).await.0,
        0,
        "a second sweep finds nothing"
    );
    assert_eq!(
        sweep_at(&db, i64::MAX, 100).await.0,
        1,
        "the open one stays"
    );
}

async fn a_check_sets_the_retention_of_all_the_childs_attendances(url: &str) {
    let db = open(url).await;
    let (child, other) = (nhs(1), nhs(2));
    record(&db, &attendance(&child, 10, None), None).await;
    record(&db, &attendance(&child, 20, None), None).await;
    record(&db, &attendance(&other, 20, None), None).await;
    // The child's flag has ended since: this check says until when all its attendances stay.
    record(&db, &attendance(&child, 30, Some(500)), Some(500)).await;
    assert_eq!(sweep_at(&db, 499, 10).await.0, 0);
    assert_eq!(
        sweep_at(&db, 500, 10).await.0,
        3,
        "all three of the child's"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attendances").await, 1);

    // A check made when no flag retains the child any more (no attendance kept) makes the
    // attendances it had due at once.
    let recording = Recording {
        attendance: None,
        events: &[],
        nhs_number: &other,
        request: None,
        retain_until_us: Some(700),
    };
    match &db {
        Database::Postgres(pool) => {
            let store = PgAttendanceStore::new(pool.clone());
            store.check(recording, |_| Vec::new()).await.unwrap();
        }
        Database::Sqlite(pool) => {
            let store = SqliteAttendanceStore::new(pool.clone());
            store.check(recording, |_| Vec::new()).await.unwrap();
        }
    }
    assert_eq!(sweep_at(&db, 700, 10).await.0, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attendances").await, 0);
}

async fn sweeps_running_at_once_delete_each_attendance_once(url: &str) {
    let db = open(url).await;
    for i in 0..60 {
        let child = nhs(i % 7 + 1);
        record(&db, &attendance(&child, i64::from(i), Some(100)), Some(100)).await;
    }
    // Three replicas' sweeps at once, in small batches.
    let (a, b, c) = tokio::join!(
        sweep_at(&db, 100, 4),
        sweep_at(&db, 100, 4),
        sweep_at(&db, 100, 4)
    );
    assert_eq!(a.0 + b.0 + c.0, 60, "each deleted once: {a:?} {b:?} {c:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attendances").await, 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        0
    );
}

/// Now, in microseconds since the epoch.
fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap()
}

async fn attendances_are_deleted_once_no_flag_retains_them(url: &str) {
    let mesh = support::start(url).await;
    let token = mesh.clinician(support::TRUST);
    let ed = CareSettingType::EmergencyDepartment;
    let day = time::Duration::days(1);

    // A current plan with no end date: kept for as long as it lasts.
    let current = nhs(1);
    mesh.flag(CAMDEN, "CAM-1", &current).await;
    mesh.check(&token, support::TRUST, ed, &current)
        .await
        .unwrap();
    let far = now_us() + 100 * 365 * DAY_US;
    assert_eq!(
        sweep_at(&mesh.db, far, 10).await.0,
        0,
        "an open flag retains"
    );

    // A plan that ended 500 days ago: kept until 24 months after its end date.
    let ended = nhs(2);
    mesh.flag_ended(CAMDEN, "CAM-2", &ended, day * 500).await;
    mesh.check(&token, support::TRUST, ed, &ended)
        .await
        .unwrap();
    assert_eq!(mesh.attendances_of(&ended).await, 1);
    assert_eq!(
        sweep_at(&mesh.db, now_us(), 10).await.0,
        0,
        "still retained today"
    );
    // 24 months after an end 500 days ago is at most about 232 days from now.
    let later = now_us() + 240 * DAY_US;
    assert_eq!(sweep_at(&mesh.db, later, 10).await.0, 1, "past the window");
    assert_eq!(mesh.attendances_of(&ended).await, 0);

    // The current plan is ended (long ago, as far as retention goes): the next check keeps
    // nothing and makes the earlier attendance due.
    mesh.flag_ended(CAMDEN, "CAM-1", &current, day * 1500).await;
    mesh.check(&token, support::TRUST, ed, &current)
        .await
        .unwrap();
    assert_eq!(mesh.attendances_of(&current).await, 1, "not yet swept");
    assert_eq!(sweep_at(&mesh.db, now_us(), 10).await.0, 1);
    assert_eq!(mesh.attendances_of(&current).await, 0);
    assert_eq!(
        mesh.audit_events().await.len(),
        3,
        "every check still audited"
    );
}

async fn retention_kept_per_attendance_before_migration_5_is_kept_per_child_after(url: &str) {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    let before = cpis_mesh::db::Migrations {
        postgres: &MIGRATIONS.postgres[..4],
        sqlite: &MIGRATIONS.sqlite[..4],
    };
    db.migrate(&before).await.unwrap();
    // Child 1: two attendances due at 100 and 200; child 2: one open-ended, one due at 300.
    let rows = [
        (nhs(1), Some(100_i64)),
        (nhs(1), Some(200)),
        (nhs(2), None),
        (nhs(2), Some(300)),
    ];
    for (i, (child, until)) in rows.iter().enumerate() {
        let sql = "INSERT INTO attendances (attendance_id, nhs_number, organisation, site, \
                   setting_type, setting_name, arrival_us, practitioner, flag_current, \
                   record_us, retain_until_us) \
                   VALUES ($1, $2, 'RAL', NULL, 1, 'ED', $3, $4, false, $3, $5)";
        let arrival = i64::try_from(i).unwrap() + 10;
        match &db {
            Database::Postgres(pool) => sqlx::query(sql)
                .bind(Uuid::now_v7())
                .bind(child)
                .bind(arrival)
                .bind(vec![1_u8])
                .bind(*until)
                .execute(pool)
                .await
                .map(|_| ())
                .unwrap(),
            Database::Sqlite(pool) => sqlx::query(sql)
                .bind(Uuid::now_v7())
                .bind(child)
                .bind(arrival)
                .bind(vec![1_u8])
                .bind(*until)
                .execute(pool)
                .await
                .map(|_| ())
                .unwrap(),
        }
    }
    db.migrate(&MIGRATIONS).await.unwrap();
    let until = |child: String| {
        format!(
            "SELECT COALESCE(retain_until_us, -1) FROM attendance_children WHERE nhs_number = '{child}'"
        )
    };
    assert_eq!(count(&db, &until(nhs(1))).await, 200, "the latest");
    assert_eq!(count(&db, &until(nhs(2))).await, -1, "open-ended wins");
    assert_eq!(sweep_at(&db, 250, 10).await.0, 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_children").await,
        1,
        "the swept child is forgotten"
    );
    assert_eq!(
        sweep_at(&db, i64::MAX - 1, 10).await.0,
        0,
        "the open one stays"
    );
}

async fn an_unflagged_childs_check_leaves_no_retention_row(url: &str) {
    let db = open(url).await;
    let child = nhs(3);
    let recording = Recording {
        attendance: None,
        events: &[],
        nhs_number: &child,
        request: None,
        retain_until_us: Some(5),
    };
    match &db {
        Database::Postgres(pool) => {
            let store = PgAttendanceStore::new(pool.clone());
            store.check(recording, |_| Vec::new()).await.unwrap();
        }
        Database::Sqlite(pool) => {
            let store = SqliteAttendanceStore::new(pool.clone());
            store.check(recording, |_| Vec::new()).await.unwrap();
        }
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_children").await,
        0,
        "no trace of a child the service keeps nothing of"
    );
}

/// Whether an index of `attendance_authorities` leads with `attendance_id`: what the sweep's
/// cascaded deletes look rows up by.
async fn authorities_indexed_by_attendance(db: &Database) -> bool {
    let sql = match db {
        Database::Postgres(_) => {
            "SELECT COUNT(*) FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = 'attendance_authorities'::regclass \
               AND a.attname = 'attendance_id'"
        }
        Database::Sqlite(_) => {
            "SELECT COUNT(*) FROM pragma_index_list('attendance_authorities') AS l \
             JOIN pragma_index_info(l.name) AS c \
             WHERE c.seqno = 0 AND c.name = 'attendance_id'"
        }
    };
    count(db, sql).await > 0
}

/// Every migration before the re-keying, in each dialect: `attendance_authorities` still
/// keyed by authority.
fn before_rekeying() -> cpis_mesh::db::Migrations {
    let upto = |all: &'static [cpis_mesh::db::EmbeddedMigration]| {
        let rekeying = all
            .iter()
            .position(|m| m.description == "authorities keyed by attendance")
            .expect("the re-keying migration");
        &all[..rekeying]
    };
    cpis_mesh::db::Migrations {
        postgres: upto(MIGRATIONS.postgres),
        sqlite: upto(MIGRATIONS.sqlite),
    }
}

async fn authorities_are_keyed_by_attendance_after_their_migration(url: &str) {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(&before_rekeying()).await.unwrap();
    assert!(
        !authorities_indexed_by_attendance(&db).await,
        "before: keyed by authority"
    );
    let due = attendance(&nhs(1), 10, Some(100));
    let later = attendance(&nhs(2), 10, Some(1_000));
    record(&db, &due, Some(100)).await;
    record(&db, &later, Some(1_000)).await;

    db.migrate(&MIGRATIONS).await.unwrap();
    assert!(authorities_indexed_by_attendance(&db).await);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        4,
        "every row kept"
    );
    // Still one row per authority and attendance.
    let again = "INSERT INTO attendance_authorities (authority, attendance_id, arrival_us) \
                 SELECT authority, attendance_id, arrival_us FROM attendance_authorities";
    let duplicate = match &db {
        Database::Postgres(pool) => sqlx::query(again).execute(pool).await.map(|_| ()),
        Database::Sqlite(pool) => sqlx::query(again).execute(pool).await.map(|_| ()),
    };
    assert!(duplicate.is_err(), "a second row for the same pairs");
    // The sweep takes the due attendance's authorities with it, and only those.
    assert_eq!(sweep_at(&db, 200, 10).await.0, 1);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        2
    );
    // A new check still stores its authorities.
    record(&db, &attendance(&nhs(3), 20, Some(1_000)), Some(1_000)).await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        4
    );
}

/// On a large table an operator builds the new key's index beforehand, without blocking
/// writes (docs/operations.md, "Migrations"); the migration takes it over.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_takes_over_a_key_index_built_beforehand() {
    let db = cpis_mesh::testkit::postgres_database().await;
    let db = Database::connect(&DatabaseSettings::new(&db))
        .await
        .unwrap();
    db.migrate(&before_rekeying()).await.unwrap();
    record(&db, &attendance(&nhs(1), 10, Some(100)), Some(100)).await;
    let Database::Postgres(pool) = &db else {
        unreachable!("a Postgres database")
    };
    sqlx::query(
        "CREATE UNIQUE INDEX CONCURRENTLY attendance_authorities_by_attendance \
         ON attendance_authorities (attendance_id, authority)",
    )
    .execute(pool)
    .await
    .unwrap();
    db.migrate(&MIGRATIONS).await.unwrap();
    assert!(authorities_indexed_by_attendance(&db).await);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'attendance_authorities'"
        )
        .await,
        2,
        "the key and the list's index; the old key's index is gone"
    );
    assert_eq!(sweep_at(&db, 200, 10).await.0, 1);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attendance_authorities").await,
        0
    );
}
