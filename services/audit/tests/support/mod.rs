//! The audit service in process, on a real database, with real mTLS clients.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the support"
)]

use std::sync::Arc;
use std::time::Duration;

use cpis_audit::AuditSection;
use cpis_merkle::NoteVerifier;
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::duration::HumanDuration;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::token::{Claims, StaticKeys, TokenSigner, TokenVerifier};
use cpis_mesh::{MeshContext, RunningServer, Shutdown};
use cpis_proto::audit::audit_service_client::AuditServiceClient;
use cpis_proto::audit::{Actor, AppendRequest, AuditEvent, AuditOutcome, actor};
use cpis_proto::common::{NhsNumber, OdsCode, TraceContext};

/// The checkpoint key of every test log.
pub const CHECKPOINT_SEED: &str =
    "7f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa01";
/// A valid NHS number.
pub const CHILD: &str = "9434765919";

/// A running audit service.
pub struct Harness {
    /// The PKI its peers use.
    pub pki: TestPki,
    /// The server.
    pub server: RunningServer,
    /// Its context.
    pub ctx: MeshContext,
    /// Signs users' tokens the service accepts.
    pub users: Arc<TokenSigner>,
    /// The database URL.
    pub db_url: String,
}

fn section(db_url: &str) -> AuditSection {
    AuditSection {
        database_url: db_url.to_owned(),
        checkpoint_key: Some(CHECKPOINT_SEED.to_owned()),
        checkpoint_interval: HumanDuration::from_secs(3600),
        checkpoint_every: 1_000_000,
        ..AuditSection::default()
    }
}

/// The verifier key of test checkpoints.
pub fn checkpoint_key() -> NoteVerifier {
    let seed: [u8; 32] = cpis_mesh::nhs_hash::decode_hex(CHECKPOINT_SEED)
        .unwrap()
        .try_into()
        .unwrap();
    cpis_merkle::CheckpointSigner::from_ed25519_seed("cpis.local/audit", &seed)
        .unwrap()
        .verifier()
}

/// Starts the audit service on `db_url` (users' tokens signed by `users`, or a new key).
pub async fn start(db_url: &str, users: Option<Arc<TokenSigner>>) -> Harness {
    let pki = TestPki::new();
    let config = pki.mesh_config("audit");
    start_on(pki, config, db_url, users).await
}

/// Starts the audit service with its mesh configuration given (e.g. a fixed port), made
/// from `pki`, which the harness keeps.
pub async fn start_with_config(
    pki: TestPki,
    config: cpis_mesh::config::MeshConfig,
    db_url: &str,
) -> Harness {
    start_on(pki, config, db_url, None).await
}

async fn start_on(
    pki: TestPki,
    config: cpis_mesh::config::MeshConfig,
    db_url: &str,
    users: Option<Arc<TokenSigner>>,
) -> Harness {
    let ctx = MeshContext::new(config, Metrics::new(), Shutdown::new()).unwrap();
    let db = Database::connect(&DatabaseSettings::new(db_url))
        .await
        .unwrap();
    db.migrate(&cpis_audit::MIGRATIONS).await.unwrap();
    let users = users.unwrap_or_else(|| Arc::new(TokenSigner::generate("users-1").unwrap().0));
    let tokens = TokenVerifier::new(
        Arc::new(StaticKeys(vec![users.verification_key()])),
        (&ctx.config.tokens).into(),
    );
    let parts = cpis_audit::parts(&ctx, &section(db_url), &db, tokens).unwrap();
    let server = cpis_mesh::start(&ctx, parts).await.unwrap();
    Harness {
        pki,
        server,
        ctx,
        users,
        db_url: db_url.to_owned(),
    }
}

impl Harness {
    /// A client presenting workload `name`'s certificate, or organisation system `RJ1/…`'s
    /// when `name` starts with `org:`.
    pub fn client(&self, name: &str) -> AuditServiceClient<MeshChannel> {
        AuditServiceClient::new(self.channel(name))
    }

    /// A channel as `name` (see [`client`](Self::client)).
    pub fn channel(&self, name: &str) -> MeshChannel {
        let files = match name.strip_prefix("org:") {
            Some(system) => self.pki.org_system("X26", system),
            None => self.pki.workload(name),
        };
        cpis_mesh::client::channel(
            &format!("https://localhost:{}", self.server.addr.port()),
            &self.pki.tls(&files),
            &Metrics::new(),
            &ChannelSettings {
                default_deadline: Duration::from_secs(30),
                ..ChannelSettings::default()
            },
        )
        .unwrap()
    }

    /// A session token for a user of organisation X26 granted `activities`.
    pub fn token(&self, activities: &[&str]) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.users.sign(&Claims {
            iss: self.ctx.config.tokens.issuer.clone(),
            sub: "officer-1".into(),
            aud: self.ctx.config.tokens.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: uuid::Uuid::new_v4().to_string(),
            org: "X26".into(),
            rp: "rp-officer".into(),
            role: "privacy-officer".into(),
            act: activities.iter().map(|a| (*a).to_owned()).collect(),
        })
    }

    /// Appends `events` as the attendance service.
    pub async fn append(&self, events: Vec<AuditEvent>) -> Vec<cpis_proto::audit::AppendResult> {
        self.client("attendance")
            .append(AppendRequest { events })
            .await
            .unwrap()
            .into_inner()
            .results
    }
}

/// An attendance check event number `i` about `CHILD`.
pub fn event(i: u32) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_time: Some(prost_types::Timestamp {
            seconds: 1_760_000_000 + i64::from(i),
            nanos: 0,
        }),
        actor: Some(Actor {
            kind: Some(actor::Kind::Workload(
                "spiffe://cpis.local/ns/cpis/sa/attendance".into(),
            )),
            calling_system: "spiffe://cpis.local/org/RJ1/system/ed-ehr".into(),
        }),
        action: "attendance.check".into(),
        nhs_number: Some(NhsNumber {
            value: CHILD.into(),
        }),
        outcome: AuditOutcome::Success as i32,
        reason: format!("check {i}"),
        care_setting: None,
        organisation: Some(OdsCode {
            value: "RJ1".into(),
        }),
        target: String::new(),
        trace_context: Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: String::new(),
        }),
    }
}

/// `n` distinct events.
pub fn events(n: u32) -> Vec<AuditEvent> {
    (0..n).map(event).collect()
}
