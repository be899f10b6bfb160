//! The attendance service: the check: a child seen at a care setting, and its record.
//!
//! - [`api`]: the handlers: validate, authorise (before any lookup), ask the flag registry,
//!   store the attendance and its outbox events in one transaction, answer;
//! - [`store`]: Postgres or SQLite behind one trait, one set of queries;
//! - [`events`]: the audit event of every check and the authorities' attendance notices,
//!   shipped from the outbox by the mesh's relay;
//! - [`retention`]: until when a child's attendances are kept, and the sweep deleting them
//!   once no flag retains them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use cpis_mesh::config::ServiceSection;
use cpis_mesh::db::{Database, EmbeddedMigration, Migrations};
use cpis_mesh::outbox::{
    self, AuditSink, NotificationSink, OutboxMetrics, OutboxNotifier, OutboxRelay, RelaySettings,
};
use cpis_mesh::server::BoxError;
use cpis_mesh::token::{IdentityKeys, TokenVerifier};
use cpis_mesh::{
    AccessPolicy, Config, MeshContext, MeshService, PeerClass, ServiceDefaults, ServiceParts,
};
use cpis_proto::attendance::attendance_service_server::{AttendanceServiceServer, SERVICE_NAME};
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use tonic::service::Routes;

pub mod api;
pub mod config;
mod convert;
mod error;
pub mod events;
mod list;
pub mod retention;
pub mod store;
mod validate;

pub use config::AttendanceSection;
pub use error::FLAGS_UNAVAILABLE;
use store::AttendanceStore;

/// The service's migrations, embedded.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "attendances",
            sql: include_str!("../migrations/postgres/0001_attendances.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: outbox::POSTGRES_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "check requests",
            sql: include_str!("../migrations/postgres/0003_check_requests.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "retention",
            sql: include_str!("../migrations/postgres/0004_retention.sql"),
        },
        EmbeddedMigration {
            version: 5,
            description: "retention per child",
            sql: include_str!("../migrations/postgres/0005_child_retention.sql"),
        },
        EmbeddedMigration {
            version: 6,
            description: "outbox: room for claims in place",
            sql: outbox::POSTGRES_HOT_SQL,
        },
        EmbeddedMigration {
            version: 7,
            description: "authorities keyed by attendance",
            sql: include_str!("../migrations/postgres/0007_authorities_by_attendance.sql"),
        },
        EmbeddedMigration {
            version: 8,
            description: "outbox: event ids not unique",
            sql: outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "attendances",
            sql: include_str!("../migrations/sqlite/0001_attendances.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: outbox::SQLITE_SQL,
        },
        EmbeddedMigration {
            version: 3,
            description: "check requests",
            sql: include_str!("../migrations/sqlite/0003_check_requests.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "retention",
            sql: include_str!("../migrations/sqlite/0004_retention.sql"),
        },
        EmbeddedMigration {
            version: 5,
            description: "retention per child",
            sql: include_str!("../migrations/sqlite/0005_child_retention.sql"),
        },
        EmbeddedMigration {
            version: 6,
            description: "authorities keyed by attendance",
            sql: include_str!("../migrations/sqlite/0006_authorities_by_attendance.sql"),
        },
        EmbeddedMigration {
            version: 7,
            description: "outbox: event ids not unique",
            sql: outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL,
        },
    ],
};

/// The attendance service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct Attendance;

/// Who may call what: the care settings' systems (directly or through the edge), with a
/// user token checked by the handlers.
pub fn policy(ctx: &MeshContext) -> AccessPolicy {
    let method = |name: &str| format!("{SERVICE_NAME}/{name}");
    ctx.policy()
        .allow_method(
            &method("RecordAttendance"),
            [PeerClass::Edge, PeerClass::OrgSystem],
        )
        .allow_method(
            &method("ListAttendances"),
            [PeerClass::Edge, PeerClass::OrgSystem],
        )
}

/// The relay shipping the outbox to audit and notification, when their addresses are
/// configured (an empty address ships nothing to that destination: its events wait).
fn relay(
    ctx: &MeshContext,
    section: &AttendanceSection,
    db: &Database,
) -> Result<Option<OutboxNotifier>, BoxError> {
    let audit = section.audit_address.trim();
    let notification = section.notification_address.trim();
    if audit.is_empty() && notification.is_empty() {
        return Ok(None);
    }
    let mut relay = OutboxRelay::new(
        outbox::store(db),
        OutboxMetrics::register(&ctx.metrics),
        RelaySettings::from(&ctx.config.outbox),
    );
    if !audit.is_empty() {
        relay = relay.with_sink(outbox::AUDIT, Arc::new(AuditSink::new(ctx.channel(audit)?)));
    }
    if !notification.is_empty() {
        relay = relay.with_sink(
            outbox::NOTIFICATION,
            Arc::new(NotificationSink::new(ctx.channel(notification)?)),
        );
    }
    let notifier = relay.notifier();
    relay.spawn(ctx.shutdown.clone());
    Ok(Some(notifier))
}

/// Builds the service on a connected, migrated database with the given token verifier;
/// starts the outbox relay when audit or notification addresses are configured.
pub fn parts(
    ctx: &MeshContext,
    section: &AttendanceSection,
    db: &Database,
    tokens: TokenVerifier,
) -> Result<ServiceParts, BoxError> {
    let flags = FlagRegistryServiceClient::new(ctx.channel(section.flags_url.trim())?);
    let notifier = relay(ctx, section, db)?;
    let routes = match db {
        Database::Postgres(pool) => routes(
            ctx,
            section,
            tokens,
            flags,
            notifier,
            store::postgres::PgAttendanceStore::new(pool.clone()),
        ),
        Database::Sqlite(pool) => routes(
            ctx,
            section,
            tokens,
            flags,
            notifier,
            store::sqlite::SqliteAttendanceStore::new(pool.clone()),
        ),
    };
    Ok(ServiceParts {
        workload: Attendance::DEFAULTS.name,
        routes,
        service_names: vec![SERVICE_NAME],
        policy: policy(ctx),
        checks: vec![db.health_check()],
    })
}

/// How often expired request-id answers are deleted.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes expired request-id answers every [`PURGE_INTERVAL`] until shutdown, so that the
/// table holds about one day of them.
fn spawn_request_purge<S: AttendanceStore>(store: S, shutdown: cpis_mesh::Shutdown) {
    tokio::spawn(async move {
        loop {
            let expired = convert::now_us().saturating_sub(api::REPLAY_WINDOW_US);
            match store.purge_requests(expired).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired request-id answers deleted"),
                Err(e) => tracing::warn!(error = %e, "expired request-id answers not deleted"),
            }
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(PURGE_INTERVAL) => {}
            }
        }
    });
}

fn routes<S: AttendanceStore>(
    ctx: &MeshContext,
    section: &AttendanceSection,
    tokens: TokenVerifier,
    flags: FlagRegistryServiceClient<cpis_mesh::client::MeshChannel>,
    outbox_notifier: Option<OutboxNotifier>,
    store: S,
) -> Routes {
    spawn_request_purge(store.clone(), ctx.shutdown.clone());
    retention::RetentionSweep {
        store: store.clone(),
        batch: section.retention_sweep_batch,
        interval: section.retention_sweep_interval.get(),
        metrics: retention::SweepMetrics::register(&ctx.metrics),
    }
    .spawn(ctx.shutdown.clone());
    Routes::new(AttendanceServiceServer::new(api::AttendanceApi {
        store,
        tokens,
        flags,
        flags_deadline: section.flags_deadline.get(),
        nhs_hasher: ctx.nhs_hasher.clone(),
        retention: section.retention(),
        outbox_notifier,
    }))
}

/// Connects to the configured database and applies the migrations.
async fn connect(section: &AttendanceSection) -> Result<Database, BoxError> {
    Ok(Database::open(
        &section.database_url,
        section.database_max_connections,
        &MIGRATIONS,
    )
    .await?)
}

impl MeshService for Attendance {
    type Section = AttendanceSection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "attendance",
        listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50053),
        admin_listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9503),
    };

    async fn migrate(config: &Config<Self::Section>) -> Result<(), BoxError> {
        connect(&config.service).await.map(|_| ())
    }

    async fn build(
        ctx: MeshContext,
        config: Config<Self::Section>,
    ) -> Result<ServiceParts, BoxError> {
        let section = config.service;
        section.validate()?;
        let db = connect(&section).await?;
        let keys = IdentityKeys::new(ctx.channel(&section.identity_url)?);
        let tokens = ctx.token_verifier(Arc::new(keys));
        parts(&ctx, &section, &db, tokens)
    }
}
