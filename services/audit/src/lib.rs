//! The audit service: the append-only, tamper-evident log of every access.
//!
//! Events arrive from every service's outbox (`Append`, idempotent by event id), get
//! consecutive indexes from one sequencer, and become leaves of an RFC 6962 Merkle tree whose
//! signed checkpoints (C2SP signed notes) let anyone prove, with `cpis audit verify`, that the
//! log was not edited afterwards. Privacy officers search it (`QueryEvents`), and every
//! search is itself logged.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use cpis_merkle::CheckpointSigner;
use cpis_mesh::config::ServiceSection;
use cpis_mesh::db::{Database, EmbeddedMigration, Migrations};
use cpis_mesh::server::BoxError;
use cpis_mesh::token::{IdentityKeys, TokenVerifier};
use cpis_mesh::{
    AccessPolicy, Config, MeshContext, MeshService, PeerClass, ServiceDefaults, ServiceParts,
};
use cpis_proto::audit::audit_service_server::{AuditServiceServer, SERVICE_NAME};
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use tonic::service::Routes;

pub mod api;
pub mod config;
mod error;
pub mod log;
mod query;
mod scope;
pub mod store;
pub mod verify;

pub use config::AuditSection;
use store::AuditStore;

/// The service's migrations, embedded.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[EmbeddedMigration {
        version: 1,
        description: "audit log",
        sql: include_str!("../migrations/postgres/0001_log.sql"),
    }],
    sqlite: &[EmbeddedMigration {
        version: 1,
        description: "audit log",
        sql: include_str!("../migrations/sqlite/0001_log.sql"),
    }],
};

/// The audit service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct Audit;

/// Who may call what: only mesh services append; organisation systems query (with a token
/// granting `audit.read`, scoped by the kind of the user's organisation); checkpoints and proofs, which reveal only hashes, are open to
/// every peer of the mesh.
pub fn policy(ctx: &MeshContext) -> AccessPolicy {
    let method = |name: &str| format!("{SERVICE_NAME}/{name}");
    let everyone = || [PeerClass::AnyService, PeerClass::Edge, PeerClass::OrgSystem];
    ctx.policy()
        .allow_method(&method("Append"), [PeerClass::AnyService])
        .allow_method(&method("QueryEvents"), [PeerClass::OrgSystem])
        .allow_method(&method("GetCheckpoint"), everyone())
        .allow_method(&method("GetInclusionProof"), everyone())
        .allow_method(&method("GetConsistencyProof"), everyone())
}

/// Builds the service on a connected, migrated database with the given token verifier.
pub fn parts(
    ctx: &MeshContext,
    section: &AuditSection,
    db: &Database,
    tokens: TokenVerifier,
) -> Result<ServiceParts, BoxError> {
    let signer =
        CheckpointSigner::from_ed25519_seed(section.key_name(), &section.checkpoint_seed()?)?;
    tracing::info!(vkey = %signer.verifier().vkey(), origin = %section.origin, "checkpoints are signed by this key");
    let scoping = Scoping {
        flags: scope::FlagRegistry {
            client: FlagRegistryServiceClient::new(ctx.channel(section.flags_url.trim())?),
            deadline: section.flags_deadline.get(),
        },
        national: section.national_organisations()?.into(),
    };
    let routes = match db {
        Database::Postgres(pool) => routes(
            ctx,
            section,
            signer,
            tokens,
            scoping,
            store::postgres::PgAuditStore::new(pool.clone()),
        ),
        Database::Sqlite(pool) => routes(
            ctx,
            section,
            signer,
            tokens,
            scoping,
            store::sqlite::SqliteAuditStore::new(pool.clone()),
        ),
    };
    Ok(ServiceParts {
        workload: Audit::DEFAULTS.name,
        routes,
        service_names: vec![SERVICE_NAME],
        policy: policy(ctx),
        checks: vec![db.health_check()],
    })
}

/// What scopes users' queries: the flag registry and the national offices.
struct Scoping {
    flags: scope::FlagRegistry,
    national: Arc<[cpis_domain::OdsCode]>,
}

fn routes<S: AuditStore>(
    ctx: &MeshContext,
    section: &AuditSection,
    signer: CheckpointSigner,
    tokens: TokenVerifier,
    scoping: Scoping,
    store: S,
) -> Routes {
    let appended = Arc::new(tokio::sync::Notify::new());
    let pending = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    let signer = Arc::new(signer);
    let api = api::AuditApi {
        store: store.clone(),
        signer: signer.clone(),
        origin: section.origin.clone(),
        recorded_by: format!("{}@{host}", ctx.tls.identity()),
        tokens,
        max_batch: section.max_batch as usize,
        appended: appended.clone(),
        pending: pending.clone(),
        nhs_hasher: ctx.nhs_hasher.clone(),
        request_checkpoints: Arc::new(log::RequestCheckpoints::new(
            section.checkpoint_min_gap.get(),
        )),
        flags: scoping.flags,
        national: scoping.national,
    };
    log::spawn_checkpointer(
        store,
        signer,
        section.origin.clone(),
        log::CheckpointPolicy {
            interval: section.checkpoint_interval.get(),
            every_events: section.checkpoint_every,
        },
        appended,
        pending,
        ctx.shutdown.clone(),
    );
    Routes::new(AuditServiceServer::new(api))
}

/// Connects to the configured database and applies the migrations.
async fn connect(section: &AuditSection) -> Result<Database, BoxError> {
    Ok(Database::open(
        &section.database_url,
        section.database_max_connections,
        &MIGRATIONS,
    )
    .await?)
}

impl MeshService for Audit {
    type Section = AuditSection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "audit",
        listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50055),
        admin_listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9505),
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
