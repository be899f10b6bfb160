//! Databases: Postgres in a cluster, SQLite on one machine, chosen by the URL's scheme.
//!
//! Each service owns one database. Its migrations are SQL files embedded in the binary (one
//! set per dialect), run at start-up and by a `migrate` subcommand for a Helm hook Job.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::health::DependencyCheck;

mod warm;
pub use warm::{Warm, WarmConnection};

/// A second, small pool on the database of `pool` whose commits do not wait for the WAL
/// flush (`synchronous_commit = off`; connections opened on first use).
///
/// Only for writes that may be lost in a database crash without harm: the outbox relay's
/// claims, confirmations and releases (a lost claim is claimed again, a lost confirmation
/// delivers an event again, which destinations dedupe by its id), and events whose access is
/// also recorded durably elsewhere. A crash loses at most the last few hundred milliseconds of
/// them; it never makes a committed change half-visible. Every other write waits for its flush,
/// and on a busy server those flushes are what a request waits for: fewer of them queued
/// means shorter waits for the ones that matter.
///
/// Its statements (the relay's claim above all) are planned by index, as in
/// [`index_scan_pool`]: a claim planned while the outbox was young read every row of its
/// destination, dead ones included, and sorted them, on every claim.
pub fn relaxed_commit_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    let options = planned_by_index((*pool.connect_options()).clone())
        .options([("synchronous_commit", "off")]);
    sibling_pool(pool, max_connections, options)
}

/// A second pool on the database of `pool`, as large, whose connections plan without
/// sequential or bitmap scans (`enable_seqscan` and `enable_bitmapscan` off; connections
/// opened on first use): for a hot statement each of whose reads has an index made for it.
///
/// A statement prepared on a connection keeps the generic plan it is given after its fifth
/// execution for as long as the connection lives, costed on the tables as they were then.
/// On a young database without statistics (a new deployment, or autovacuum off), a read of
/// "a child's last 25 attendances" planned while the table was nearly empty became a bitmap
/// scan of all the child's rows and a sort, and stayed so as the table grew: every check of
/// a frequent attendee then read every attendance it had (docs/performance.md, change 22).
/// With those scans priced out, the planner reads the index in its order and stops after
/// the limit, whatever it believes about the table's size. Nothing is forbidden: a table
/// with no usable index is still read whole.
pub fn index_scan_pool(pool: &PgPool) -> PgPool {
    let options = planned_by_index((*pool.connect_options()).clone());
    sibling_pool(pool, pool.options().get_max_connections(), options)
}

/// A pool of `max_connections` with `options`, beside `pool`: its acquire timeout, no ping
/// before use, idle connections recycled after five minutes, opened on first use.
fn sibling_pool(pool: &PgPool, max_connections: u32, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .test_before_acquire(false)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(options)
}

/// `options` with sequential and bitmap scans priced out of every plan.
fn planned_by_index(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("enable_seqscan", "off"), ("enable_bitmapscan", "off")])
}

/// A database problem.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `postgres://` nor `sqlite:`.
    #[error("database URL must start with postgres:// or sqlite: (got `{0}`)")]
    Scheme(String),
    /// The URL does not parse.
    #[error("database URL: {0}")]
    Url(String),
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
}

/// How a service connects to its database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://user@host:5432/db` or `sqlite:path/to/file.db`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// Bound on acquiring a connection.
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    /// Settings for `url` with a pool sized for one service replica.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection pool of either dialect.
#[derive(Debug, Clone)]
pub enum Database {
    /// Postgres.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// One migration, embedded with `include_str!`.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigration {
    /// Its version: applied in increasing order, never renumbered once released.
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

/// A service's migrations, one list per dialect.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// For Postgres.
    pub postgres: &'static [EmbeddedMigration],
    /// For SQLite.
    pub sqlite: &'static [EmbeddedMigration],
}

#[derive(Debug)]
struct Embedded(&'static [EmbeddedMigration]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|m| {
                    Migration::new(
                        m.version,
                        m.description.into(),
                        MigrationType::Simple,
                        m.sql.into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

impl Database {
    /// Connects to the database the URL names. An SQLite file is created when missing, in
    /// WAL mode with a busy timeout so that readers and the one writer do not block each other.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let url = settings.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options =
                PgConnectOptions::from_str(url).map_err(|e| DbError::Url(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                // No ping before each use: a round trip per statement on every request path.
                // A connection the server dropped fails its next statement and is discarded;
                // idle connections are recycled before servers and proxies time them out.
                .test_before_acquire(false)
                .idle_timeout(Some(Duration::from_secs(300)))
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?;
            Ok(Self::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbError::Url(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if let Some(dir) = options
                .get_filename()
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbError::Url(format!("{}: {e}", dir.display())))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?;
            Ok(Self::Sqlite(pool))
        } else {
            Err(DbError::Scheme(url.to_owned()))
        }
    }

    /// Connects to `url` with a pool of `max_connections` and applies `migrations`: what every
    /// service with a database does at start-up and in its `migrate` subcommand.
    pub async fn open(
        url: &str,
        max_connections: u32,
        migrations: &Migrations,
    ) -> Result<Self, DbError> {
        let mut settings = DatabaseSettings::new(url);
        settings.max_connections = max_connections;
        let db = Self::connect(&settings).await?;
        db.migrate(migrations).await?;
        Ok(db)
    }

    /// Applies the migrations of the database's dialect that are not applied yet. Safe with
    /// several replicas starting at once (sqlx takes a lock).
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        match self {
            Self::Postgres(pool) => {
                Migrator::new(Embedded(migrations.postgres))
                    .await?
                    .run(pool)
                    .await?
            }
            Self::Sqlite(pool) => {
                Migrator::new(Embedded(migrations.sqlite))
                    .await?
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// `postgres` or `sqlite`, for logs.
    pub fn dialect(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await?,
            Self::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                return Ok(());
            }
        };
        Ok(())
    }

    /// A health dependency on this database.
    pub fn health_check(&self) -> Arc<dyn DependencyCheck> {
        Arc::new(DatabaseCheck(self.clone()))
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

#[derive(Debug)]
struct DatabaseCheck(Database);

impl DependencyCheck for DatabaseCheck {
    fn name(&self) -> &str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            tokio::time::timeout(Duration::from_secs(2), self.0.ping())
                .await
                .map_err(|_| "no answer within 2s".to_owned())?
                .map_err(|e| e.to_string())
        })
    }
}
