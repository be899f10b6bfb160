//! The notification service: telling local authorities: inboxes, live streams and webhooks.
//!
//! Producers (attendance, flag-registry) publish events through their outboxes
//! (`Publish`, idempotent by event id); each is stored in its authority's inbox at the
//! next place, and fanned out to the live `Subscribe` streams of every replica (Redis
//! pub/sub, or in process on one machine). Authorities' users list and acknowledge their
//! own inbox.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use cpis_mesh::config::ServiceSection;
use cpis_mesh::db::{Database, EmbeddedMigration, Migrations};
use cpis_mesh::outbox::{self, AuditSink, OutboxMetrics, OutboxRelay, RelaySettings};
use cpis_mesh::server::BoxError;
use cpis_mesh::token::{IdentityKeys, TokenVerifier};
use cpis_mesh::{
    AccessPolicy, Config, MeshContext, MeshService, PeerClass, ServiceDefaults, ServiceParts,
};
use cpis_proto::notification::notification_service_server::{
    NotificationServiceServer, SERVICE_NAME,
};
use tonic::service::Routes;

pub mod api;
pub mod audit;
pub mod config;
mod convert;
pub mod cursor;
mod error;
pub mod fanout;
mod publish;
pub mod signature;
pub mod store;
mod subscribe;

pub use config::NotificationSection;
use fanout::Fanout;
use store::NotificationStore;

/// The service's migrations, embedded.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "inbox",
            sql: include_str!("../migrations/postgres/0001_inbox.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: outbox::POSTGRES_SQL,
        },
    ],
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "inbox",
            sql: include_str!("../migrations/sqlite/0001_inbox.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "outbox",
            sql: outbox::SQLITE_SQL,
        },
    ],
};

/// The notification service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct Notification;

/// Who may call what: only attendance and flag-registry publish; authorities' systems
/// (directly or through the edge) read and manage their inbox, with a user token.
pub fn policy(ctx: &MeshContext) -> AccessPolicy {
    let method = |name: &str| format!("{SERVICE_NAME}/{name}");
    let mut policy = ctx.policy().allow_method(
        &method("Publish"),
        [
            PeerClass::service("attendance"),
            PeerClass::service("flag-registry"),
        ],
    );
    for name in [
        "ListNotifications",
        "AcknowledgeNotifications",
        "Subscribe",
        "RegisterWebhook",
        "ListWebhooks",
        "RotateWebhookSecret",
        "UnregisterWebhook",
        "ListWebhookDeliveries",
        "ListDeliveryAttempts",
    ] {
        policy = policy.allow_method(&method(name), [PeerClass::Edge, PeerClass::OrgSystem]);
    }
    policy
}

/// Builds the service on a connected, migrated database with the given token verifier and
/// live fan-out. With an audit address, starts the relay that ships audit events from the
/// outbox; without, they wait there.
pub fn parts(
    ctx: &MeshContext,
    section: &NotificationSection,
    db: &Database,
    tokens: TokenVerifier,
    fanout: Fanout,
) -> Result<ServiceParts, BoxError> {
    let fanout_check = fanout.health_check();
    let fanout = Arc::new(fanout);
    let audit = Audit {
        outbox: outbox::store(db),
        notifier: if section.audit_address.trim().is_empty() {
            None
        } else {
            let relay = OutboxRelay::new(
                outbox::store(db),
                OutboxMetrics::register(&ctx.metrics),
                RelaySettings::default(),
            )
            .with_sink(
                outbox::AUDIT,
                Arc::new(AuditSink::new(ctx.channel(section.audit_address.trim())?)),
            );
            let notifier = relay.notifier();
            relay.spawn(ctx.shutdown.clone());
            Some(notifier)
        },
    };
    let routes = match db {
        Database::Postgres(pool) => routes(
            ctx,
            section,
            tokens,
            fanout,
            audit,
            store::postgres::PgNotificationStore::new(pool.clone()),
        ),
        Database::Sqlite(pool) => routes(
            ctx,
            section,
            tokens,
            fanout,
            audit,
            store::sqlite::SqliteNotificationStore::new(pool.clone()),
        ),
    };
    let mut checks = vec![db.health_check()];
    checks.extend(fanout_check);
    Ok(ServiceParts {
        workload: Notification::DEFAULTS.name,
        routes,
        service_names: vec![SERVICE_NAME],
        policy: policy(ctx),
        checks,
    })
}

/// Where audit events go.
struct Audit {
    outbox: Arc<dyn outbox::OutboxStore>,
    notifier: Option<outbox::OutboxNotifier>,
}

fn routes<S: NotificationStore>(
    ctx: &MeshContext,
    section: &NotificationSection,
    tokens: TokenVerifier,
    fanout: Arc<Fanout>,
    audit: Audit,
    store: S,
) -> Routes {
    Routes::new(NotificationServiceServer::new(api::NotificationApi {
        store,
        tokens,
        fanout,
        max_batch: section.max_batch as usize,
        keep_alive: section.keep_alive.get(),
        shutdown: ctx.shutdown.clone(),
        outbox: audit.outbox,
        outbox_notifier: audit.notifier,
    }))
}

/// The live fan-out the section asks for: through Redis when configured.
pub async fn fanout(ctx: &MeshContext, section: &NotificationSection) -> Result<Fanout, BoxError> {
    match &section.redis_url {
        Some(url) => Fanout::with_redis(url, section.redis_channel(), ctx.shutdown.clone()).await,
        None => Ok(Fanout::in_process()),
    }
}

/// Connects to the configured database and applies the migrations.
async fn connect(section: &NotificationSection) -> Result<Database, BoxError> {
    Ok(Database::open(
        &section.database_url,
        section.database_max_connections,
        &MIGRATIONS,
    )
    .await?)
}

impl MeshService for Notification {
    type Section = NotificationSection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "notification",
        listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50054),
        admin_listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9504),
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
        let fanout = fanout(&ctx, &section).await?;
        parts(&ctx, &section, &db, tokens, fanout)
    }
}
