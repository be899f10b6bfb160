//! The identity service: who is who, and what they may do.
//!
//! - the directory ([`directory`]): organisations, users, role profiles and the activities
//!   each role grants, imported and exported as a YAML file;
//! - sign-in ([`credential`], [`limiter`]): argon2id credentials, failed sign-ins limited per
//!   username and per calling system;
//! - session tokens and their keys ([`keys`]): EdDSA-signed JWTs, keys encrypted at rest and
//!   rotated, published by `GetSigningKeys`; [`IdentityKeySource`] is the key source other
//!   services give their token verifier;
//! - the person register ([`persons`]): the demographics stand-in uploads are traced against;
//! - [`store`]: Postgres or SQLite behind one trait; [`audit`]: the events it writes to the
//!   transactional outbox, in the transaction of what they record, shipped to the audit
//!   service by the mesh's relay; [`api`]: the gRPC handlers.

pub mod api;
pub mod audit;
pub mod config;
pub mod credential;
pub mod directory;
pub mod error;
pub mod keys;
pub mod limiter;
pub mod persons;
pub mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use cpis_mesh::authz::{AccessPolicy, PeerClass};
use cpis_mesh::outbox::{self, AuditSink, OutboxMetrics, OutboxRelay, RelaySettings};
use cpis_mesh::server::BoxError;
use cpis_mesh::token::TokenRules;
use cpis_mesh::{Config, MeshContext, MeshService, ServiceDefaults, ServiceParts};
use cpis_proto::identity::identity_service_server::IdentityServiceServer;
use tonic::service::Routes;

pub use api::{IdentityApi, IdentityState};
pub use config::IdentitySection;
/// The key source other services verify tokens with: the mesh's client of `GetSigningKeys`.
pub use cpis_mesh::token::IdentityKeys as IdentityKeySource;
pub use error::IdentityError;

/// The gRPC service's full name.
pub const SERVICE_NAME: &str = "cpis.identity.v1.IdentityService";

/// The identity service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct Identity;

impl MeshService for Identity {
    type Section = IdentitySection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "identity",
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051),
        admin_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9501),
    };

    async fn migrate(config: &Config<Self::Section>) -> Result<(), BoxError> {
        store::open(&config.service.database_url).await?;
        Ok(())
    }

    async fn build(
        ctx: MeshContext,
        config: Config<Self::Section>,
    ) -> Result<ServiceParts, BoxError> {
        build(&ctx, &config).await.map(|(parts, _)| parts)
    }
}

/// A running service's insides, for tests and tools in the same process.
#[derive(Debug, Clone)]
pub struct IdentityHandle {
    /// What the handlers share: store, keys, limiter.
    pub state: Arc<IdentityState>,
}

/// Connects the database (migrating it), loads or makes the signing keys, and builds the
/// routes, access policy and health checks.
pub async fn build(
    ctx: &MeshContext,
    config: &Config<IdentitySection>,
) -> Result<(ServiceParts, IdentityHandle), BoxError> {
    let section = &config.service;
    let store = store::open(&section.database_url).await?;
    let encryption =
        keys::KeyEncryption::from_hex(section.key_encryption_key.as_deref().unwrap_or_default())
            .map_err(|e| format!("identity.key_encryption_key: {e}"))?;
    let rules = TokenRules::from(&ctx.config.tokens);
    let policy = keys::KeyPolicy {
        rotation_period: section.key_rotation_period.get(),
        verify_window: section.token_lifetime.get()
            + section.key_check_interval.get()
            + rules.leeway,
    };
    let keys = keys::KeyRing::load(store.clone(), encryption, policy).await?;
    keys.spawn_refresher(section.key_check_interval.get(), ctx.shutdown.clone());
    let limits = limiter::LimitSettings {
        username_limit: section.username_failure_limit,
        system_limit: section.system_failure_limit,
        window: section.failure_window.get(),
        lockout: section.lockout_duration.get(),
    };
    let limiter = match &section.redis_url {
        Some(url) => limiter::SignInLimiter::redis(url, &section.redis_key_prefix, limits).await?,
        None => limiter::SignInLimiter::memory(limits),
    };
    if !section.audit_address.trim().is_empty() {
        // Audit events written with the directory's changes are shipped from the outbox.
        let relay = OutboxRelay::new(
            outbox::store(store.database()),
            OutboxMetrics::register(&ctx.metrics),
            RelaySettings::from(&ctx.config.outbox),
        )
        .with_sink(
            outbox::AUDIT,
            Arc::new(AuditSink::new(ctx.channel(section.audit_address.trim())?)),
        );
        store.set_outbox_notifier(relay.notifier());
        relay.spawn(ctx.shutdown.clone());
    }
    let mut checks = vec![store.health_check()];
    checks.extend(limiter.health_check());
    let state = Arc::new(IdentityState {
        store,
        keys,
        hasher: credential::CredentialHasher::new()?,
        limiter,
        rules,
        token_lifetime: section.token_lifetime.get(),
        key_cache_age: section.key_check_interval.get(),
        min_credential_length: section.min_credential_length,
        nhs_hasher: ctx.nhs_hasher.clone(),
    });
    let parts = ServiceParts {
        workload: Identity::DEFAULTS.name,
        routes: Routes::new(IdentityServiceServer::new(IdentityApi::new(state.clone()))),
        service_names: vec![SERVICE_NAME],
        policy: access_policy(ctx.policy()),
        checks,
    };
    Ok((parts, IdentityHandle { state }))
}

/// Who may call which RPC (DESIGN.md "Security"); users' activities are checked by the
/// handlers.
pub fn access_policy(policy: AccessPolicy) -> AccessPolicy {
    use PeerClass::{AnyService, Edge, OrgSystem};
    let method = |name: &str| format!("{SERVICE_NAME}/{name}");
    let mut policy = policy
        // Sign-in is public: outside callers reach it through the edge.
        .allow_method(&method("IssueToken"), [Edge, OrgSystem])
        // Every service verifies tokens locally with these keys.
        .allow_method(&method("GetSigningKeys"), [AnyService])
        .allow_method(&method("Authorize"), [AnyService, Edge, OrgSystem])
        .allow_method(&method("GetOrganisation"), [AnyService, Edge, OrgSystem])
        .allow_method(&method("ListOrganisations"), [AnyService, Edge, OrgSystem])
        // Demographics traces serve uploads, which only the flag registry handles.
        .allow_method(
            &method("TracePerson"),
            [PeerClass::service("flag-registry")],
        )
        .allow_method(
            &method("TracePeople"),
            [PeerClass::service("flag-registry")],
        );
    for admin in [
        "CreateUser",
        "DisableUser",
        "ListUsers",
        "CreateRoleProfile",
        "DisableRoleProfile",
        "ImportDirectory",
        "ExportDirectory",
        "ImportPersons",
    ] {
        policy = policy.allow_method(&method(admin), [Edge, OrgSystem]);
    }
    policy
}
