//! The flag-registry service: which children are flagged: flags, their history and uploads.
//!
//! - [`store`]: Postgres or SQLite behind one trait, one set of queries; every write takes
//!   its audit events into the outbox in the same transaction;
//! - [`api`]: the gRPC handlers (validate, authorise, trace, store, invalidate the cache);
//! - [`cache`]: the `GetFlags` read-through cache (Redis, or bounded in process), never
//!   stale after a write;
//! - [`demographics`]: traces against identity's person register;
//! - [`clock`]: today's date in England, on which the visibility rule is computed.

pub mod api;
pub mod audit;
pub mod cache;
pub mod clock;
pub mod config;
mod convert;
pub mod demographics;
mod error;
pub mod store;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::outbox::{self, AuditSink, OutboxMetrics, OutboxRelay, RelaySettings};
use cpis_mesh::server::BoxError;
use cpis_mesh::token::{IdentityKeys, TokenVerifier};
use cpis_mesh::{
    AccessPolicy, Config, MeshContext, MeshService, PeerClass, ServiceDefaults, ServiceParts,
};
use cpis_proto::flags::flag_registry_service_server::{FlagRegistryServiceServer, SERVICE_NAME};
use tonic::service::Routes;

pub use api::{FlagRegistryApi, FlagRegistryState};
pub use config::FlagsSection;
pub use store::MIGRATIONS;

/// The flag-registry service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct FlagRegistry;

/// The attendance service's workload name: the registry's one caller for checks. (The
/// policy below spells it as a literal: tests/deploy read the policies from the source to
/// check the chart's NetworkPolicies.)
pub(crate) const ATTENDANCE_WORKLOAD: &str = "attendance";

/// Who may call what: `GetFlags` only the attendance service, and the audit service (which
/// asks whether a local authority flags the child its user queries the log about), never
/// outside callers;
/// authorities' systems, directly or through the edge, everything else (their users'
/// `flag.manage` and organisation are checked by the handlers).
pub fn policy(ctx: &MeshContext) -> AccessPolicy {
    let method = |name: &str| format!("{SERVICE_NAME}/{name}");
    let authorities = || [PeerClass::Edge, PeerClass::OrgSystem];
    ctx.policy()
        .allow_method(
            &method("GetFlags"),
            [
                PeerClass::service("attendance"),
                PeerClass::service("audit"),
            ],
        )
        .allow_method(&method("UpsertFlag"), authorities())
        .allow_method(&method("EndFlag"), authorities())
        .allow_method(&method("ListFlags"), authorities())
        .allow_method(&method("GetUploadReport"), authorities())
        .allow_method(&method("BulkUpload"), authorities())
}

/// Builds the service from its state.
pub fn parts(ctx: &MeshContext, state: Arc<FlagRegistryState>) -> ServiceParts {
    let checks = vec![state.store.database().health_check()];
    ServiceParts {
        workload: FlagRegistry::DEFAULTS.name,
        routes: Routes::new(FlagRegistryServiceServer::new(FlagRegistryApi::new(state))),
        service_names: vec![SERVICE_NAME],
        policy: policy(ctx),
        checks,
    }
}

/// The state of a service configured by `section` on a connected, migrated database.
pub fn state(
    ctx: &MeshContext,
    section: &FlagsSection,
    db: &Database,
    tokens: TokenVerifier,
    demographics: Arc<dyn demographics::Demographics>,
) -> Result<FlagRegistryState, BoxError> {
    let ttl = section.cache_ttl.get();
    let cache = match section.redis_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            cache::FlagCache::redis(url, &section.redis_key_prefix, ttl)?
        }
        _ => cache::FlagCache::memory(
            usize::try_from(section.cache_capacity).unwrap_or(usize::MAX),
            ttl,
        ),
    };
    Ok(FlagRegistryState {
        store: store::open(db),
        tokens,
        demographics,
        cache,
        clock: clock::Clock::system(),
        windows: section.windows(),
        nhs_hasher: ctx.nhs_hasher.clone(),
    })
}

/// Connects to the configured database and applies the migrations.
async fn connect(section: &FlagsSection) -> Result<Database, BoxError> {
    let mut settings = DatabaseSettings::new(&section.database_url);
    settings.max_connections = section.database_max_connections;
    let db = Database::connect(&settings).await?;
    db.migrate(&MIGRATIONS).await?;
    Ok(db)
}

impl MeshService for FlagRegistry {
    type Section = FlagsSection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "flag-registry",
        listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50052),
        admin_listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9502),
    };

    async fn migrate(config: &Config<Self::Section>) -> Result<(), BoxError> {
        connect(&config.service).await.map(|_| ())
    }

    async fn build(
        ctx: MeshContext,
        config: Config<Self::Section>,
    ) -> Result<ServiceParts, BoxError> {
        let section = config.service;
        cpis_mesh::config::ServiceSection::validate(&section)?;
        let db = connect(&section).await?;
        let identity = ctx.channel(&section.identity_url)?;
        let tokens = ctx.token_verifier(Arc::new(IdentityKeys::new(identity.clone())));
        let register = Arc::new(demographics::IdentityRegister::new(identity));
        let state = state(&ctx, &section, &db, tokens, register)?;
        if !section.audit_address.trim().is_empty() {
            // Audit events written with each change are shipped from the outbox.
            let relay = OutboxRelay::new(
                outbox::store(&db),
                OutboxMetrics::register(&ctx.metrics),
                RelaySettings::from(&ctx.config.outbox),
            )
            .with_sink(
                outbox::AUDIT,
                Arc::new(AuditSink::new(ctx.channel(section.audit_address.trim())?)),
            );
            state.store.set_outbox_notifier(relay.notifier());
            relay.spawn(ctx.shutdown.clone());
        }
        Ok(parts(&ctx, Arc::new(state)))
    }
}
