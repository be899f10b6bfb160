//! The outbox to the real audit service: events written while the audit service is down
//! all arrive once it is up, each exactly once in the log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::Shutdown;
use cpis_mesh::db::{Database, DatabaseSettings, EmbeddedMigration, Migrations};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::outbox::{
    self, AuditSink, Backoff, NewOutboxEvent, OutboxMetrics, OutboxRelay, RelaySettings,
};
use cpis_mesh::testkit::{TestPki, postgres_database, sqlite_database};
use cpis_proto::audit::GetCheckpointRequest;

const PRODUCER: Migrations = Migrations {
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "outbox",
            sql: outbox::POSTGRES_SQL,
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox: room for claims in place",
            sql: outbox::POSTGRES_HOT_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: event ids not unique",
            sql: outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "outbox",
            sql: outbox::SQLITE_SQL,
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox: event ids not unique",
            sql: outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
};

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_events_written_while_audit_is_down_arrive_exactly_once() {
    // The producer (any service) has its own SQLite database and outbox.
    let dir = tempfile::tempdir().unwrap();
    let producer = Database::connect(&DatabaseSettings::new(sqlite_database(
        dir.path(),
        "producer",
    )))
    .await
    .unwrap();
    producer.migrate(&PRODUCER).await.unwrap();

    // Where the audit service will listen, once it is up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pki = TestPki::new();
    let attendance = pki.tls(&pki.workload("attendance"));
    let channel = cpis_mesh::client::channel(
        &format!("https://localhost:{port}"),
        &attendance,
        &Metrics::new(),
        &Default::default(),
    )
    .unwrap();
    let shutdown = Shutdown::new();
    let relay = OutboxRelay::new(
        outbox::store(&producer),
        OutboxMetrics::register(&Metrics::new()),
        RelaySettings {
            batch_size: 30,
            poll_interval: Duration::from_millis(50),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(400)),
            ..RelaySettings::default()
        },
    )
    .with_sink(outbox::AUDIT, Arc::new(AuditSink::new(channel)));
    let notifier = relay.notifier();
    let relay_task = relay.spawn(shutdown.clone());

    // 100 events, each written in its own producer transaction, while audit is down.
    let Database::Sqlite(pool) = &producer else {
        unreachable!()
    };
    for i in 0..100 {
        let mut tx = pool.begin().await.unwrap();
        outbox::enqueue_sqlite(
            &mut tx,
            &[NewOutboxEvent::audit(support::event(i)).unwrap()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        notifier.notify();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Audit comes up on that port.
    let mut config = pki.mesh_config("audit");
    config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let db_url = postgres_database().await;
    let h = support::start_with_config(pki, config, &db_url).await;
    let mut client = h.client("attendance");
    let mut size = 0;
    for _ in 0..200 {
        size = client
            .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap()
            .tree_size;
        if size >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(size, 100, "not every event arrived");
    // Nothing left in the outbox, and nothing arrives twice later.
    let pending = outbox::store(&producer).stats(outbox::AUDIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let size = client
        .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .tree_size;
    assert_eq!(size, 100, "an event was appended twice");
    assert_eq!(pending.depth, 0);
    shutdown.trigger();
    relay_task.await.unwrap();
}
