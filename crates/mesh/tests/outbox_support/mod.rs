//! Fixtures of the outbox tests: a database of either dialect with the outbox and a
//! producer's own table, a consumer that dedupes by event id, and waiting helpers.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by the cases of the outbox suite"
)]

pub mod audit;
mod consumer;
pub mod delivery;

pub use consumer::{Consumer, POISON};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::db::{Database, DatabaseSettings, EmbeddedMigration, Migrations};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::outbox::{
    AUDIT, Backoff, NewOutboxEvent, OutboxMetrics, OutboxRelay, OutboxSink, OutboxStore,
    RelaySettings, enqueue_postgres, enqueue_sqlite,
};
use cpis_mesh::testkit::{postgres_database, sqlite_database};
use opentelemetry::trace::TracerProvider as _;
use sqlx::Row;
use time::OffsetDateTime;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

/// How long a test waits for the outbox to settle.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A producer's migrations: the outbox as its migration 1, its own table as 2, and on
/// Postgres the outbox's later migration as 3.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "outbox",
            sql: cpis_mesh::outbox::POSTGRES_SQL,
        },
        EmbeddedMigration {
            version: 2,
            description: "things",
            sql: "CREATE TABLE things (id UUID PRIMARY KEY)",
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: room for claims in place",
            sql: cpis_mesh::outbox::POSTGRES_HOT_SQL,
        },
        EmbeddedMigration {
            version: 4,
            description: "outbox: event ids not unique",
            sql: cpis_mesh::outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "outbox",
            sql: cpis_mesh::outbox::SQLITE_SQL,
        },
        EmbeddedMigration {
            version: 2,
            description: "things",
            sql: "CREATE TABLE things (id BLOB PRIMARY KEY)",
        },
        EmbeddedMigration {
            version: 3,
            description: "outbox: event ids not unique",
            sql: cpis_mesh::outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
};

/// A migrated database and its outbox store.
pub struct Fixture {
    pub url: String,
    pub db: Database,
    pub store: Arc<dyn OutboxStore>,
    _dir: Option<tempfile::TempDir>,
}

/// An outbox row as stored.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub seq: i64,
    pub id: Uuid,
    pub destination: String,
    pub traceparent: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: OffsetDateTime,
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

impl Fixture {
    pub async fn postgres() -> Self {
        Self::open(postgres_database().await, None).await
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_database(dir.path(), "producer");
        Self::open(url, Some(dir)).await
    }

    async fn open(url: String, dir: Option<tempfile::TempDir>) -> Self {
        let db = Database::connect(&DatabaseSettings::new(&url))
            .await
            .unwrap();
        db.migrate(&MIGRATIONS).await.unwrap();
        Self {
            store: cpis_mesh::outbox::store(&db),
            url,
            db,
            _dir: dir,
        }
    }

    /// A store on a pool of its own, as another replica has.
    pub async fn another_store(&self) -> Arc<dyn OutboxStore> {
        let db = Database::connect(&DatabaseSettings::new(&self.url))
            .await
            .unwrap();
        cpis_mesh::outbox::store(&db)
    }

    /// The producer's change: a row of its own and `events`, in one transaction that
    /// commits or rolls back.
    pub async fn write(&self, events: &[NewOutboxEvent], commit: bool) {
        let thing = Uuid::now_v7();
        match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("INSERT INTO things (id) VALUES ($1)")
                    .bind(thing)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                enqueue_postgres(&mut tx, events).await.unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("INSERT INTO things (id) VALUES (?1)")
                    .bind(thing)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                enqueue_sqlite(&mut tx, events).await.unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }
        }
    }

    /// Rows of the producer's own table.
    pub async fn things(&self) -> i64 {
        let query = "SELECT count(*) AS n FROM things";
        match &self.db {
            Database::Postgres(pool) => sqlx::query(query).fetch_one(pool).await.unwrap().get("n"),
            Database::Sqlite(pool) => sqlx::query(query).fetch_one(pool).await.unwrap().get("n"),
        }
    }

    /// Every outbox row, in creation order.
    pub async fn rows(&self) -> Vec<StoredRow> {
        let query = "SELECT seq, event_id, destination, traceparent, attempts, next_attempt_at, \
                     claimed_by, last_error FROM outbox ORDER BY seq";
        match &self.db {
            Database::Postgres(pool) => sqlx::query(query)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| StoredRow {
                    seq: r.get("seq"),
                    id: r.get("event_id"),
                    destination: r.get("destination"),
                    traceparent: r.get("traceparent"),
                    attempts: i64::from(r.get::<i32, _>("attempts")),
                    next_attempt_at: r.get("next_attempt_at"),
                    claimed_by: r.get("claimed_by"),
                    last_error: r.get("last_error"),
                })
                .collect(),
            Database::Sqlite(pool) => sqlx::query(query)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| StoredRow {
                    seq: r.get("seq"),
                    id: r.get("event_id"),
                    destination: r.get("destination"),
                    traceparent: r.get("traceparent"),
                    attempts: r.get("attempts"),
                    next_attempt_at: from_ms(r.get("next_attempt_at")),
                    claimed_by: r.get("claimed_by"),
                    last_error: r.get("last_error"),
                })
                .collect(),
        }
    }
}

/// `n` audit-bound events with distinct payloads.
pub fn events(n: usize) -> Vec<NewOutboxEvent> {
    (0..n)
        .map(|i| NewOutboxEvent::new(AUDIT, format!("event {i}").into_bytes()))
        .collect()
}

/// Settings fast enough for tests.
pub fn fast(relay_id: &str) -> RelaySettings {
    RelaySettings {
        relay_id: relay_id.to_owned(),
        batch_size: 10,
        poll_interval: Duration::from_millis(20),
        linger: Duration::from_millis(5),
        lease: Duration::from_secs(5),
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(100)),
    }
}

/// A relay shipping `audit` rows of `store` to `sink`.
pub fn relay(
    store: Arc<dyn OutboxStore>,
    sink: Arc<dyn OutboxSink>,
    settings: RelaySettings,
) -> OutboxRelay {
    let metrics = OutboxMetrics::register(&Metrics::new());
    OutboxRelay::new(store, metrics, settings).with_sink(AUDIT, sink)
}

/// Polls `condition` every 20 ms for up to `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `produce` inside a span of a real OpenTelemetry tracer; returns what it returned
/// and the span's trace id.
pub fn traced<T>(produce: impl FnOnce() -> T) -> (T, String) {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("outbox-test")));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request");
        let _entered = span.enter();
        let trace_id = cpis_mesh::propagation::trace_id(&span).expect("a trace id");
        (produce(), trace_id)
    })
}

/// The value of the sample `name` in a metrics text, if present.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}
