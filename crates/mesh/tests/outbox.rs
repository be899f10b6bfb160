//! The transactional outbox: one contract suite run against Postgres and SQLite (each case
//! is an async fn of a [`Fixture`], run once per dialect), and the AuditSink over mTLS.

mod outbox_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cpis_mesh::Shutdown;
use cpis_mesh::db::{Database, DatabaseSettings, EmbeddedMigration, Migrations};
use cpis_mesh::outbox::{
    AUDIT, AuditSink, NewOutboxEvent, OutboxSink, OutboxWriter, PostgresOutbox, RelaySettings,
    Retry, SinkError,
};
use cpis_mesh::testkit::{TestPki, postgres_database, sqlite_database};
use cpis_proto::audit::AuditEvent;
use time::OffsetDateTime;
use uuid::Uuid;

use outbox_support::audit::{AuditServer, POISON_ACTION, attendance_channel};
// The relay cases, for the macro to find beside the store cases.
use outbox_support::delivery::*;
use outbox_support::{Consumer, Fixture, PATIENCE, events, eventually, fast, relay, traced};

/// Runs each case against both stores.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::postgres().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::sqlite().await).await;
                }
            )*
        }
    };
}

contract!(
    rolled_back_writes_leave_nothing,
    a_batch_larger_than_one_statement_is_written_whole_and_in_order,
    the_writer_commits_every_callers_events_once_and_shares_commits,
    a_failed_group_commit_reaches_every_caller_in_it,
    a_repeated_event_id_is_kept_and_reaches_its_destination_once,
    queued_events_are_written_without_the_caller_waiting,
    committed_writes_carry_the_trace_context,
    leases_keep_claims_apart_and_fence_releases,
    a_destination_down_while_100_events_are_written_gets_each_once,
    a_relay_killed_mid_batch_loses_nothing,
    two_relays_never_ship_a_row_at_once,
    creation_order_is_kept,
    a_failing_destination_backs_off,
    a_rejected_event_holds_back_only_itself,
    metrics_follow_the_backlog,
    a_notified_relay_does_not_wait_for_its_poll,
    audit_sink_appends_over_mtls,
);

/// How often the outbox was vacuumed, as Postgres counts it.
async fn vacuums(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Writes one more event at a time, each delivered before the next, until the outbox has
/// been vacuumed or `waves` events were written. Postgres counts dead rows a second or so
/// after the deletes, and the relay looks at the count after its own deletes.
async fn deliver_until_vacuumed(fx: &Fixture, pool: &sqlx::PgPool, waves: usize) -> bool {
    for _ in 0..waves {
        if vacuums(pool).await >= 1 {
            return true;
        }
        fx.write(&events(1), true).await;
        assert!(eventually(PATIENCE, || async { fx.rows().await.is_empty() }).await);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    vacuums(pool).await >= 1
}

/// Where autovacuum is off or behind (as on the CI machine), the relay vacuums its outbox
/// itself once the table holds enough dead rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_postgres_outbox_is_vacuumed_by_its_relay() {
    let fx = Fixture::postgres().await;
    let Database::Postgres(pool) = &fx.db else {
        unreachable!("a Postgres fixture");
    };
    assert_eq!(vacuums(pool).await, 0);
    let store = Arc::new(PostgresOutbox::with_vacuum(
        pool.clone(),
        25,
        Duration::ZERO,
    ));
    let consumer = Consumer::up();
    fx.write(&events(30), true).await;
    let shutdown = Shutdown::new();
    let running = relay(store, Arc::new(consumer.clone()), fast("relay")).spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { consumer.stored().len() == 30 }).await);
    assert!(
        deliver_until_vacuumed(&fx, pool, 5).await,
        "30 deleted rows passed the threshold of 25"
    );
    assert!(fx.rows().await.is_empty());
    shutdown.trigger();
    running.await.unwrap();
}

/// The dead rows are Postgres's count, not the relay's: a relay started after another one
/// deleted rows (a restart, another replica) vacuums them too, though it deleted far fewer
/// than the threshold itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_vacuums_the_rows_deleted_before_it_started() {
    let fx = Fixture::postgres().await;
    let Database::Postgres(pool) = &fx.db else {
        unreachable!("a Postgres fixture");
    };
    let consumer = Consumer::up();
    // The first relay never vacuums: its threshold is out of reach.
    let first = Arc::new(PostgresOutbox::with_vacuum(
        pool.clone(),
        u64::MAX,
        Duration::ZERO,
    ));
    fx.write(&events(30), true).await;
    let shutdown = Shutdown::new();
    let running = relay(first, Arc::new(consumer.clone()), fast("first")).spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { consumer.stored().len() == 30 }).await);
    shutdown.trigger();
    running.await.unwrap();
    assert_eq!(vacuums(pool).await, 0);

    // The second deletes five rows at most, against a threshold of 25.
    let second = Arc::new(PostgresOutbox::with_vacuum(
        pool.clone(),
        25,
        Duration::ZERO,
    ));
    let shutdown = Shutdown::new();
    let running = relay(second, Arc::new(consumer.clone()), fast("second")).spawn(shutdown.clone());
    assert!(
        deliver_until_vacuumed(&fx, pool, 5).await,
        "the first relay's 30 deleted rows passed the second's threshold of 25"
    );
    shutdown.trigger();
    running.await.unwrap();
}

/// A claim updates the rows it ships: on Postgres the outbox's pages keep room for that,
/// so the new versions stay on their page (heap-only tuples) and add no index entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_update_rows_in_place() {
    let fx = Fixture::postgres().await;
    let Database::Postgres(pool) = &fx.db else {
        unreachable!("a Postgres fixture");
    };
    let updates = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'outbox'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let consumer = Consumer::up();
    for _ in 0..4 {
        fx.write(&events(100), true).await;
    }
    let store = Arc::new(PostgresOutbox::new(pool.clone()));
    let shutdown = Shutdown::new();
    // Whole pages claimed at once, as a busy relay claims them.
    let settings = RelaySettings {
        batch_size: 100,
        ..fast("relay")
    };
    let running = relay(store, Arc::new(consumer.clone()), settings).spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { consumer.stored().len() == 400 }).await);
    shutdown.trigger();
    running.await.unwrap();
    // The statistics arrive when the relay's sessions report them (about once a second).
    assert!(eventually(PATIENCE, || async { updates().await.0 >= 400 }).await);
    let (updated, in_place) = updates().await;
    // Without the room (fillfactor 100): 87 of 400.
    assert_eq!(
        in_place, updated,
        "claimed rows updated in place, of those updated"
    );
}

/// Dropping the uniqueness of event ids (Postgres's `POSTGRES_EVENT_ID_NOT_UNIQUE_SQL`,
/// SQLite's rebuild `SQLITE_EVENT_ID_NOT_UNIQUE_SQL`) keeps the rows waiting, their order
/// and the sequence: a row written afterwards comes after every row ever written, including
/// those already delivered and deleted (SQLite's rebuilt table must carry AUTOINCREMENT's
/// counter over).
async fn dropping_unique_event_ids_keeps_rows_order_and_sequence(url: String) {
    let all = &outbox_support::MIGRATIONS;
    let before = |list: &'static [EmbeddedMigration]| {
        let dropping = list
            .iter()
            .position(|m| m.description == "outbox: event ids not unique")
            .expect("the migration dropping the uniqueness");
        &list[..dropping]
    };
    let old = Migrations {
        postgres: before(all.postgres),
        sqlite: before(all.sqlite),
    };
    let db = Database::connect(&DatabaseSettings::new(&url))
        .await
        .unwrap();
    db.migrate(&old).await.unwrap();
    let store = cpis_mesh::outbox::store(&db);
    let written = events(5);
    store.enqueue(&written).await.unwrap();
    let lease = Duration::from_millis(1);
    let claim = store.claim(AUDIT, 10, "old", lease).await.unwrap();
    let seqs: Vec<i64> = claim.events.iter().map(|e| e.seq).collect();
    // The newest two delivered: the highest number given so far is no longer in the table.
    assert_eq!(store.confirm(&seqs[3..]).await.unwrap(), 2);

    db.migrate(&outbox_support::MIGRATIONS).await.unwrap();
    let store = cpis_mesh::outbox::store(&db);
    let later = events(1);
    store.enqueue(&later).await.unwrap();
    tokio::time::sleep(lease * 10).await;
    let waiting = store
        .claim(AUDIT, 10, "new", Duration::from_secs(30))
        .await
        .unwrap();
    let ids: Vec<Uuid> = waiting.events.iter().map(|e| e.id).collect();
    let expected: Vec<Uuid> = written[..3]
        .iter()
        .chain(&later)
        .map(NewOutboxEvent::id)
        .collect();
    assert_eq!(ids, expected, "the waiting rows, in creation order");
    assert!(waiting.events[3].seq > seqs[4], "the sequence went back");
    // The same id again is accepted now; the two indexes the relay walks are still there.
    store.enqueue(&later).await.unwrap();
    if let Database::Postgres(pool) = &db {
        let mut indexes: Vec<String> =
            sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = 'outbox'")
                .fetch_all(pool)
                .await
                .unwrap();
        indexes.sort();
        assert_eq!(indexes.len(), 2, "{indexes:?}");
        assert!(indexes[0].ends_with("(destination, seq)"), "{indexes:?}");
        assert!(indexes[1].ends_with("(seq)"), "{indexes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dropping_unique_event_ids_keeps_rows_order_and_sequence() {
    dropping_unique_event_ids_keeps_rows_order_and_sequence(postgres_database().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dropping_unique_event_ids_keeps_rows_order_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_database(dir.path(), "producer");
    dropping_unique_event_ids_keeps_rows_order_and_sequence(url).await;
}

async fn rolled_back_writes_leave_nothing(fx: Fixture) {
    fx.write(&events(3), false).await;
    assert!(fx.rows().await.is_empty());
    assert_eq!(fx.things().await, 0);

    fx.write(&events(3), true).await;
    assert_eq!(fx.rows().await.len(), 3);
    assert_eq!(fx.things().await, 1);
}

async fn a_batch_larger_than_one_statement_is_written_whole_and_in_order(fx: Fixture) {
    // An upload's chunk: more rows than one multi-row INSERT holds, and a remainder.
    let written = events(450);
    fx.write(&written, true).await;
    let rows = fx.rows().await;
    assert_eq!(rows.len(), 450);
    for (row, event) in rows.iter().zip(&written) {
        assert_eq!(row.id, event.id());
        assert_eq!(row.destination, event.destination());
    }
    // A rolled-back batch leaves nothing, however many statements it took.
    fx.write(&events(450), false).await;
    assert_eq!(fx.rows().await.len(), 450);
}

async fn the_writer_commits_every_callers_events_once_and_shares_commits(fx: Fixture) {
    let commits = Arc::new(AtomicUsize::new(0));
    let counter = commits.clone();
    let writer = OutboxWriter::spawn(fx.db.clone(), move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let written: Vec<Vec<NewOutboxEvent>> = (0..100).map(|_| events(2)).collect();
    let callers = written.iter().map(|events| {
        let writer = writer.clone();
        let events = events.clone();
        tokio::spawn(async move { writer.write(events).await })
    });
    for caller in futures_util::future::join_all(callers).await {
        caller.unwrap().unwrap();
    }
    // Every caller's events, each once, its own in its order.
    let rows = fx.rows().await;
    assert_eq!(rows.len(), 200);
    let position = |id: Uuid| rows.iter().position(|r| r.id == id).unwrap();
    for events in &written {
        assert!(position(events[0].id()) < position(events[1].id()));
    }
    // Callers that queued during a commit shared the next one.
    let commits = commits.load(Ordering::SeqCst);
    assert!(
        (1..100).contains(&commits),
        "{commits} commits for 100 callers"
    );
    // Nothing to write costs nothing.
    writer.write(Vec::new()).await.unwrap();
    assert_eq!(fx.rows().await.len(), 200);
}

async fn a_failed_group_commit_reaches_every_caller_in_it(fx: Fixture) {
    let writer = OutboxWriter::spawn(fx.db.clone(), || {});
    // An event the database refuses: the shared statement fails as a whole.
    cpis_mesh::testkit::refuse_outbox_destination(&fx.db, "refused").await;
    let callers = (0..10).map(|i| {
        let writer = writer.clone();
        let mut events = events(1);
        if i == 0 {
            events.push(NewOutboxEvent::new("refused", b"refused".to_vec()));
        }
        tokio::spawn(async move { writer.write(events).await })
    });
    let results: Vec<_> = futures_util::future::join_all(callers).await;
    let failed = results
        .into_iter()
        .map(|r| r.unwrap())
        .filter(|r| matches!(r, Err(cpis_mesh::outbox::OutboxError::Batch(_))))
        .count();
    assert!(
        failed >= 1,
        "the caller with the refused event heard the error"
    );
    // What failed left nothing; what succeeded (callers in other commits) is there once.
    assert_eq!(fx.rows().await.len(), 10 - failed);
}

async fn a_repeated_event_id_is_kept_and_reaches_its_destination_once(fx: Fixture) {
    // A producer that writes the same event twice (a retried transaction, say) is not
    // refused: delivery is at least once anyway, and destinations ignore an id seen before.
    let event = events(1);
    fx.write(&event, true).await;
    fx.write(&event, true).await;
    let rows = fx.rows().await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.id == event[0].id()));
    let consumer = Consumer::up();
    let relay = relay(fx.store.clone(), Arc::new(consumer.clone()), fast("relay"));
    let shutdown = Shutdown::new();
    let running = relay.spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { fx.rows().await.is_empty() }).await);
    assert_eq!(consumer.deliveries().len(), 2, "each row shipped");
    assert_eq!(consumer.stored(), vec![event[0].id()]);
    shutdown.trigger();
    running.await.unwrap();
}

async fn queued_events_are_written_without_the_caller_waiting(fx: Fixture) {
    let commits = Arc::new(AtomicUsize::new(0));
    let counter = commits.clone();
    let writer = OutboxWriter::spawn(fx.db.clone(), move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let queued = events(3);
    writer.queue(queued.clone()).await.unwrap();
    writer.write(events(1)).await.unwrap();
    assert!(eventually(PATIENCE, || async { fx.rows().await.len() == 4 }).await);
    let rows = fx.rows().await;
    for event in &queued {
        assert_eq!(rows.iter().filter(|r| r.id == event.id()).count(), 1);
    }
    assert!(commits.load(Ordering::SeqCst) >= 1);
}

async fn committed_writes_carry_the_trace_context(fx: Fixture) {
    let (written, trace_id) = traced(|| events(2));
    assert!(written[0].traceparent().unwrap().contains(&trace_id));
    fx.write(&written, true).await;

    let rows = fx.rows().await;
    assert_eq!(rows.len(), 2);
    for (row, event) in rows.iter().zip(&written) {
        assert_eq!(row.id, event.id());
        assert_eq!(row.destination, AUDIT);
        assert!(row.traceparent.as_deref().unwrap().contains(&trace_id));
    }
    let claim = fx
        .store
        .claim(AUDIT, 10, "relay", Duration::from_secs(5))
        .await
        .unwrap();
    for event in &claim.events {
        let producer = event.span_context().expect("a stored span context");
        assert_eq!(producer.trace_id().to_string(), trace_id);
    }
}

async fn leases_keep_claims_apart_and_fence_releases(fx: Fixture) {
    let written = events(5);
    fx.write(&written, true).await;
    let store = &fx.store;

    let a = store
        .claim(AUDIT, 3, "a", Duration::from_millis(200))
        .await
        .unwrap();
    let ids: Vec<Uuid> = a.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, written[..3].iter().map(|e| e.id()).collect::<Vec<_>>());
    let b = store
        .claim(AUDIT, 10, "b", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.events.len(), 2, "only the rows a does not hold");
    let none = store.claim(AUDIT, 10, "c", Duration::from_secs(30)).await;
    assert!(none.unwrap().events.is_empty());
    let other = store.claim("notification", 10, "c", Duration::from_secs(30));
    assert!(other.await.unwrap().events.is_empty());

    // a's lease expires: its rows are free again; its late release changes nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = store
        .claim(AUDIT, 10, "c", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(c.events.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    let retries: Vec<Retry> = a
        .events
        .iter()
        .map(|e| Retry {
            seq: e.seq,
            delay: Duration::ZERO,
        })
        .collect();
    assert_eq!(store.release(&a.lease, &retries, "late").await.unwrap(), 0);

    let seqs: Vec<i64> = c.events.iter().map(|e| e.seq).collect();
    assert_eq!(store.confirm(&seqs).await.unwrap(), 3);
    let retries: Vec<Retry> = b
        .events
        .iter()
        .map(|e| Retry {
            seq: e.seq,
            delay: Duration::ZERO,
        })
        .collect();
    assert_eq!(store.release(&b.lease, &retries, "down").await.unwrap(), 2);
    let again = store
        .claim(AUDIT, 10, "d", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.events.len(), 2);
    assert!(again.events.iter().all(|e| e.attempts == 1));
    assert_eq!(store.stats(AUDIT).await.unwrap().depth, 2);
}

fn audit_event(action: &str) -> AuditEvent {
    AuditEvent {
        action: action.to_owned(),
        ..Default::default()
    }
}

async fn audit_sink_appends_over_mtls(fx: Fixture) {
    let pki = TestPki::new();
    let audit = AuditServer::start(&pki).await;
    let ((written, poison), trace_id) = traced(|| {
        let written: Vec<NewOutboxEvent> = (0..20)
            .map(|_| NewOutboxEvent::audit(audit_event("attendance.check")).unwrap())
            .collect();
        (
            written,
            NewOutboxEvent::audit(audit_event(POISON_ACTION)).unwrap(),
        )
    });
    let mut all = written.clone();
    all.insert(5, poison.clone());
    fx.write(&all, true).await;

    // Audit restarting: UNAVAILABLE is retried with backoff, nothing is lost.
    let sink = AuditSink::new(attendance_channel(&pki, audit.server.addr.port()));
    let shutdown = Shutdown::new();
    let running = relay(fx.store.clone(), Arc::new(sink), fast("relay")).spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { audit.log.calls().len() >= 2 }).await);
    assert!(audit.log.stored().is_empty());
    audit.log.set_up(true);

    assert!(eventually(PATIENCE, || async { audit.log.stored().len() == 20 }).await);
    let stored = audit.log.stored();
    for event in &written {
        let appended = &stored[&event.id().to_string()];
        let context = appended.trace_context.as_ref().expect("trace context");
        assert!(context.traceparent.contains(&trace_id));
        assert_eq!(Some(context.traceparent.as_str()), event.traceparent());
    }
    // The refused event alone stays, with the destination's reason.
    assert!(eventually(PATIENCE, || async { fx.rows().await.len() == 1 }).await);
    let rows = fx.rows().await;
    assert_eq!(rows[0].id, poison.id());
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("INVALID_ARGUMENT")
    );
    shutdown.trigger();
    running.await.unwrap();
    audit.stop().await;
}

#[tokio::test]
async fn audit_sink_reports_an_unreachable_audit_as_retryable() {
    let pki = TestPki::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sink = AuditSink::new(attendance_channel(&pki, port));
    let event = NewOutboxEvent::audit(audit_event("attendance.check")).unwrap();
    let claimed = cpis_mesh::outbox::OutboxEvent {
        seq: 1,
        id: event.id(),
        destination: AUDIT.to_owned(),
        payload: event.payload().to_vec(),
        traceparent: None,
        tracestate: None,
        created_at: OffsetDateTime::now_utc(),
        attempts: 0,
    };
    let error = sink.deliver(vec![claimed.clone()]).await.unwrap_err();
    assert!(!error.is_rejection(), "{error}");

    let garbage = cpis_mesh::outbox::OutboxEvent {
        payload: vec![0xff, 0xff, 0xff],
        ..claimed
    };
    let error = sink.deliver(vec![garbage]).await.unwrap_err();
    assert!(matches!(error, SinkError::Rejected(_)), "{error}");
}
