//! A check's events reach the real audit log and the real notification inbox through
//! attendance's outbox relay, over mTLS, even when those services were down at the time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::token::TokenSigner;
use cpis_mesh::{MeshContext, RunningServer, Shutdown};
use cpis_proto::common::CareSettingType;
use support::{CAMDEN, Flags, Sinks, TRUST, nhs};
use tokio::net::TcpSocket;

/// A checkpoint key for the test audit log.
const CHECKPOINT_SEED: &str = "7f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa01";

async fn database(url: &str, migrations: &cpis_mesh::db::Migrations) -> Database {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(migrations).await.unwrap();
    db
}

/// The mesh configuration of `name`, listening on any free port.
fn config(pki: &TestPki, name: &'static str) -> cpis_mesh::config::MeshConfig {
    let mut config = pki.mesh_config(name);
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

/// A port held for a service that is not running yet: bound but not listening, so
/// connections to it are refused and no other test can take it in the meantime.
fn reserve() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Serves `parts` on the reserved socket, or on any free port without one.
async fn serve(
    ctx: &MeshContext,
    parts: cpis_mesh::ServiceParts,
    reserved: Option<TcpSocket>,
) -> RunningServer {
    match reserved {
        Some(socket) => {
            let listener = socket.listen(1024).unwrap();
            cpis_mesh::start_with_listener(ctx, parts, listener)
                .await
                .unwrap()
        }
        None => cpis_mesh::start(ctx, parts).await.unwrap(),
    }
}

/// The audit service on an SQLite file in `dir`, on the reserved socket if given.
async fn start_audit(
    pki: &TestPki,
    users: &TokenSigner,
    dir: &std::path::Path,
    reserved: Option<TcpSocket>,
) -> (RunningServer, Database) {
    let ctx = MeshContext::new(config(pki, "audit"), Metrics::new(), Shutdown::new()).unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir, "audit");
    let db = database(&url, &cpis_audit::MIGRATIONS).await;
    let section = cpis_audit::AuditSection {
        database_url: url,
        checkpoint_key: Some(CHECKPOINT_SEED.to_owned()),
        ..cpis_audit::AuditSection::default()
    };
    let parts = cpis_audit::parts(&ctx, &section, &db, support::verifier(users, &ctx)).unwrap();
    (serve(&ctx, parts, reserved).await, db)
}

/// The notification service on an SQLite file in `dir`, on the reserved socket if given.
async fn start_notification(
    pki: &TestPki,
    users: &TokenSigner,
    dir: &std::path::Path,
    reserved: Option<TcpSocket>,
) -> (RunningServer, Database) {
    let ctx =
        MeshContext::new(config(pki, "notification"), Metrics::new(), Shutdown::new()).unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir, "notification");
    let db = database(&url, &cpis_notification::MIGRATIONS).await;
    let section = cpis_notification::NotificationSection {
        database_url: url,
        audit_address: String::new(),
        // Every notice stored as its own notification, so that each is counted once
        // (folding repeated attendances is notification's business, tested there).
        fold_window: cpis_mesh::duration::HumanDuration::from_secs(0),
        ..cpis_notification::NotificationSection::default()
    };
    let parts = cpis_notification::parts(
        &ctx,
        &section,
        &db,
        support::verifier(users, &ctx),
        cpis_notification::fanout::Fanout::in_process(),
    )
    .unwrap();
    (serve(&ctx, parts, reserved).await, db)
}

async fn count(db: &Database, sql: &str) -> i64 {
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Waits until `sql` counts `expected`, or fails after 15 seconds.
async fn eventually(db: &Database, sql: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n = count(db, sql).await;
        if n == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {n}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    a_checks_audit_and_notification_events_are_delivered_once,
    checks_succeed_while_audit_and_notification_are_down_and_their_events_arrive_once_up,
);

async fn a_checks_audit_and_notification_events_are_delivered_once(url: &str) {
    let pki = TestPki::new();
    let users = Arc::new(TokenSigner::generate("users-1").unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let (audit, audit_db) = start_audit(&pki, &users, dir.path(), None).await;
    let (notification, notification_db) = start_notification(&pki, &users, dir.path(), None).await;
    let sinks = Sinks {
        audit: format!("https://localhost:{}", audit.addr.port()),
        notification: format!("https://localhost:{}", notification.addr.port()),
    };
    let mesh = support::start_in(pki, users, url, Flags::Up, sinks).await;
    let flagged = nhs(1);
    mesh.flag(CAMDEN, "CAM-1", &flagged).await;
    let token = mesh.clinician(TRUST);
    let ed = CareSettingType::EmergencyDepartment;

    let answer = mesh.check(&token, TRUST, ed, &flagged).await.unwrap();
    mesh.check(&token, TRUST, ed, &nhs(2)).await.unwrap();

    eventually(
        &audit_db,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'attendance.check'",
        2,
    )
    .await;
    eventually(
        &notification_db,
        &format!("SELECT COUNT(*) FROM notifications WHERE authority = '{CAMDEN}'"),
        1,
    )
    .await;
    eventually(&mesh.db, "SELECT COUNT(*) FROM outbox", 0).await;
    // Nothing more arrives later (delivered once, not again).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(
            &audit_db,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'attendance.check'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&notification_db, "SELECT COUNT(*) FROM notifications").await,
        1
    );
    assert!(!answer.check_id.is_empty());
}

async fn checks_succeed_while_audit_and_notification_are_down_and_their_events_arrive_once_up(
    url: &str,
) {
    let pki = TestPki::new();
    let users = Arc::new(TokenSigner::generate("users-1").unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let ((audit_socket, audit_port), (notification_socket, notification_port)) =
        (reserve(), reserve());
    let sinks = Sinks {
        audit: format!("https://localhost:{audit_port}"),
        notification: format!("https://localhost:{notification_port}"),
    };
    let mesh = support::start_in(pki, users.clone(), url, Flags::Up, sinks).await;
    let flagged = nhs(1);
    mesh.flag(CAMDEN, "CAM-1", &flagged).await;
    let token = mesh.clinician(TRUST);
    let ed = CareSettingType::EmergencyDepartment;

    // 30 checks, a third of them of a flagged child, with both destinations down.
    for i in 0..30 {
        let child = if i % 3 == 0 { flagged.clone() } else { nhs(2) };
        mesh.check(&token, TRUST, ed, &child).await.unwrap();
    }
    assert_eq!(mesh.audit_events().await.len(), 30, "waiting in the outbox");
    assert_eq!(mesh.notification_events().await.len(), 10);

    let (_audit, audit_db) = start_audit(&mesh.pki, &users, dir.path(), Some(audit_socket)).await;
    let (_notification, notification_db) =
        start_notification(&mesh.pki, &users, dir.path(), Some(notification_socket)).await;
    eventually(&mesh.db, "SELECT COUNT(*) FROM outbox", 0).await;
    let checks = "SELECT COUNT(*) FROM audit_events WHERE action = 'attendance.check'";
    let distinct = "SELECT COUNT(DISTINCT event_id) FROM audit_events";
    eventually(&audit_db, checks, 30).await;
    assert_eq!(count(&audit_db, distinct).await, 30, "each exactly once");
    eventually(&notification_db, "SELECT COUNT(*) FROM notifications", 10).await;
}
