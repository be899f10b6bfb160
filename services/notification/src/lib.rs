//! The notification service: telling local authorities: inboxes, live streams and webhooks.
//!
//! Producers (attendance, flag-registry) publish events through their outboxes
//! (`Publish`, idempotent by event id); each is stored in its authority's inbox at the
//! next place, and fanned out to the live `Subscribe` streams of every replica (Redis
//! pub/sub, or in process on one machine). Authorities' users list and acknowledge their
//! own inbox, and register webhooks; a background worker on every replica delivers signed
//! webhook deliveries (retried, then dead-lettered) and escalates attendance notifications
//! left unacknowledged. Repeated attendances of a child at a setting are folded into one
//! notification with a count.

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
pub mod escalation;
pub mod fanout;
mod publish;
pub mod signature;
pub mod store;
mod subscribe;
pub mod webhook;
mod webhooks_api;
pub mod worker;

pub use config::NotificationSection;
use fanout::Fanout;
use store::{NotificationStore, WebhookStore};

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
        EmbeddedMigration {
            version: 3,
            description: "webhooks",
            sql: include_str!("../migrations/postgres/0003_webhooks.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "outbox: room for claims in place",
            sql: outbox::POSTGRES_HOT_SQL,
        },
        EmbeddedMigration {
            version: 5,
            description: "outbox: event ids not unique",
            sql: outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL,
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
        EmbeddedMigration {
            version: 3,
            description: "webhooks",
            sql: include_str!("../migrations/sqlite/0003_webhooks.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "outbox: event ids not unique",
            sql: outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL,
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
                RelaySettings::from(&ctx.config.outbox),
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
    let runtime = Runtime::from_section(section)?;
    let routes = match db {
        Database::Postgres(pool) => routes(
            ctx,
            section,
            tokens,
            fanout,
            audit,
            runtime,
            store::postgres::PgNotificationStore::new(pool.clone()),
        ),
        Database::Sqlite(pool) => routes(
            ctx,
            section,
            tokens,
            fanout,
            audit,
            runtime,
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

/// What the handlers and the worker are built with, from the section.
struct Runtime {
    sealer: webhook::SecretSealer,
    client: webhook::client::WebhookClient,
    escalation: escalation::EscalationPolicy,
    worker: worker::WorkerSettings,
}

impl Runtime {
    fn from_section(section: &NotificationSection) -> Result<Self, BoxError> {
        let sealer = match &section.webhook_secret_key {
            Some(key) => webhook::SecretSealer::from_base64(key)
                .map_err(|e| format!("notification.webhook_secret_key: {e}"))?,
            None => webhook::SecretSealer::unsealed(),
        };
        let timeout = section.delivery_timeout.get();
        let client = webhook::client::WebhookClient::new(
            section.webhook_ca_file.as_deref().map(std::path::Path::new),
            timeout,
        )?;
        Ok(Self {
            sealer,
            client,
            escalation: escalation::EscalationPolicy {
                after: section.escalation_after.get(),
                after_out_of_hours: section.escalation_after_out_of_hours.get(),
                office_hours: section.office_hours()?,
            },
            worker: worker::WorkerSettings {
                poll_interval: section.worker_poll_interval.get(),
                backoff_base: section.delivery_backoff_base.get(),
                backoff_cap: section.delivery_backoff_cap.get(),
                max_age: section.delivery_max_age.get(),
                // An attempt ends at the timeout, well before another worker may take the
                // delivery over.
                lease: timeout * 2 + std::time::Duration::from_secs(5),
            },
        })
    }
}

fn routes<S: NotificationStore + WebhookStore>(
    ctx: &MeshContext,
    section: &NotificationSection,
    tokens: TokenVerifier,
    fanout: Arc<Fanout>,
    audit: Audit,
    runtime: Runtime,
    store: S,
) -> Routes {
    let waker = worker::WorkerWaker::default();
    tokio::spawn(
        worker::Worker {
            store: store.clone(),
            client: runtime.client,
            sealer: runtime.sealer.clone(),
            fanout: fanout.clone(),
            settings: runtime.worker,
            waker: waker.clone(),
            shutdown: ctx.shutdown.clone(),
            metrics: worker::WorkerMetrics::register(&ctx.metrics),
        }
        .run(),
    );
    Routes::new(NotificationServiceServer::new(api::NotificationApi {
        store,
        tokens,
        fanout,
        max_batch: section.max_batch as usize,
        keep_alive: section.keep_alive.get(),
        shutdown: ctx.shutdown.clone(),
        outbox: audit.outbox,
        outbox_notifier: audit.notifier,
        sealer: runtime.sealer,
        escalation: runtime.escalation,
        fold_window_us: i64::try_from(section.fold_window.get().as_micros()).unwrap_or(i64::MAX),
        worker: waker,
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
