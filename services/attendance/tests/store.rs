//! The store contract on both stores: an attendance and its outbox events commit together
//! or not at all; recent attendances come newest first, limited.

use cpis_attendance::MIGRATIONS;
use cpis_attendance::store::postgres::PgAttendanceStore;
use cpis_attendance::store::sqlite::SqliteAttendanceStore;
use cpis_attendance::store::{AttendanceStore, NewAttendance, Recording, RequestKey, StoreError};
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::outbox::NewOutboxEvent;
use uuid::Uuid;

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                let url = cpis_mesh::testkit::postgres_database().await;
                super::with_store(&url, |s| super::$case(s), |s| super::$case(s)).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = cpis_mesh::testkit::sqlite_database(dir.path(), "attendance");
                super::with_store(&url, |s| super::$case(s), |s| super::$case(s)).await;
            }
        }
    )*};
}

on_both_stores!(
    an_attendance_and_its_events_commit_together_or_not_at_all,
    recent_attendances_are_the_childs_newest_first_and_limited,
    a_request_ids_answer_is_replayed_until_it_expires_and_is_purged,
    checks_cancelled_at_any_point_leave_the_next_checks_correct,
);

async fn with_store<P, Q>(
    url: &str,
    pg: impl FnOnce(PgAttendanceStore) -> P,
    lite: impl FnOnce(SqliteAttendanceStore) -> Q,
) where
    P: Future<Output = ()>,
    Q: Future<Output = ()>,
{
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(&MIGRATIONS).await.unwrap();
    cpis_mesh::testkit::refuse_outbox_destination(&db, REFUSED).await;
    match db {
        Database::Postgres(pool) => pg(PgAttendanceStore::new(pool)).await,
        Database::Sqlite(pool) => lite(SqliteAttendanceStore::new(pool)).await,
    }
}

/// Outbox rows for this destination fail their statement (a trigger the tests install).
const REFUSED: &str = "refused";

fn attendance(number: &str, arrival_us: i64) -> NewAttendance {
    NewAttendance {
        attendance_id: Uuid::now_v7(),
        nhs_number: number.to_owned(),
        organisation: "RAL".to_owned(),
        site: Some("RAL01".to_owned()),
        setting_type: 1,
        setting_name: "ED".to_owned(),
        arrival_us,
        practitioner: vec![1, 2, 3],
        flag_current: true,
        record_us: arrival_us,
        authorities: vec!["E09000007".to_owned(), "E09000019".to_owned()],
        retain_until_us: None,
    }
}

async fn an_attendance_and_its_events_commit_together_or_not_at_all(store: impl AttendanceStore) {
    let event = NewOutboxEvent::new("audit", vec![1]);
    let first = attendance("9990000018", 1_000);
    store
        .record(Some(&first), std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!(store.recent("9990000018", 25).await.unwrap().len(), 1);

    // An event the outbox refuses: the attendance written before it in the same
    // transaction must be rolled back.
    let second = attendance("9990000026", 2_000);
    let refused = NewOutboxEvent::new(REFUSED, vec![2]);
    store
        .record(Some(&second), &[refused])
        .await
        .expect_err("a refused event fails the transaction");
    assert!(
        store.recent("9990000026", 25).await.unwrap().is_empty(),
        "the attendance was rolled back with its events"
    );

    // Events alone (an unflagged child's audit) commit without an attendance.
    store
        .record(None, &[NewOutboxEvent::new("audit", vec![3])])
        .await
        .unwrap();
}

async fn recent_attendances_are_the_childs_newest_first_and_limited(store: impl AttendanceStore) {
    for i in 0..5 {
        store
            .record(Some(&attendance("9990000018", i * 10)), &[])
            .await
            .unwrap();
    }
    store
        .record(Some(&attendance("9990000026", 1_000)), &[])
        .await
        .unwrap();
    let recent = store.recent("9990000018", 3).await.unwrap();
    let arrivals: Vec<i64> = recent.iter().map(|a| a.arrival_us).collect();
    assert_eq!(arrivals, [40, 30, 20]);
    assert_eq!(recent[0].site.as_deref(), Some("RAL01"));
}

async fn a_request_ids_answer_is_replayed_until_it_expires_and_is_purged(
    store: impl AttendanceStore,
) {
    let key = RequestKey {
        request_id: Uuid::now_v7(),
        user_id: "u-1".to_owned(),
        now_us: 1_000,
        expired_us: 0,
    };
    let first = attendance("9990000018", 500);
    let recording = Recording {
        attendance: Some(&first),
        events: &[],
        nhs_number: "9990000018",
        request: Some(&key),
        retain_until_us: None,
    };
    let recent = store
        .check(recording, |recent| {
            vec![u8::try_from(recent.len()).unwrap()]
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 1, "the answer sees its own attendance");
    assert_eq!(store.replay(&key).await.unwrap(), Some(vec![1]));
    let other_user = RequestKey {
        user_id: "u-2".to_owned(),
        ..key.clone()
    };
    assert_eq!(store.replay(&other_user).await.unwrap(), None);

    // The same id again: refused, and the second attendance rolled back.
    let again = attendance("9990000018", 600);
    let refused = store
        .check(
            Recording {
                attendance: Some(&again),
                ..recording
            },
            |_| vec![9],
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::RequestReplayed)),
        "{refused:?}"
    );
    assert_eq!(store.recent("9990000018", 25).await.unwrap().len(), 1);

    let expired = RequestKey {
        expired_us: 1_000,
        ..key.clone()
    };
    assert_eq!(store.replay(&expired).await.unwrap(), None, "expired");
    assert_eq!(store.purge_requests(999).await.unwrap(), 0);
    assert_eq!(store.purge_requests(1_000).await.unwrap(), 1);
    assert_eq!(store.replay(&key).await.unwrap(), None, "purged");
}

/// A check whose caller gives up (its future dropped: a deadline, a client gone) may stop
/// in the middle of its statement or transaction. The next checks must answer correctly
/// all the same, whichever pooled connection they get.
async fn checks_cancelled_at_any_point_leave_the_next_checks_correct(store: impl AttendanceStore) {
    let child = "9990000018";
    let check = |attendance: NewAttendance| {
        let store = store.clone();
        async move {
            let recording = Recording {
                attendance: Some(&attendance),
                events: &[],
                nhs_number: child,
                request: None,
                retain_until_us: None,
            };
            store.check(recording, |_| Vec::new()).await
        }
    };
    // Cancelled after 0, 50, 100, ... microseconds: before, during and after the statement.
    for i in 0..60 {
        let late = std::time::Duration::from_micros(50 * i);
        let _ =
            tokio::time::timeout(late, check(attendance(child, i64::try_from(i).unwrap()))).await;
    }
    let stored = store.recent(child, 100).await.unwrap().len();
    // Every later check answers with what is stored (a cancelled check stored all or
    // nothing), its own attendance first.
    for i in 0..20 {
        let arrival = 1_000_000 + i;
        let recent = check(attendance(child, arrival)).await.unwrap();
        assert_eq!(
            recent.len(),
            (stored + 1 + usize::try_from(i).unwrap()).min(25)
        );
        assert_eq!(recent[0].arrival_us, arrival);
    }
}
