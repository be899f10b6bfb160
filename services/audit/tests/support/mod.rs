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
use cpis_mesh::token::{Claims, SessionClaims, StaticKeys, TokenSigner, TokenVerifier};
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
        // One per request that finds the log grown: the proofs tests ask for at once.
        checkpoint_min_gap: HumanDuration::from_millis(0),
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

/// Starts the audit service on `db_url` signing checkpoints for requests at most one per
/// `min_gap`.
pub async fn start_paced(db_url: &str, min_gap: Duration) -> Harness {
    let pki = TestPki::new();
    let config = pki.mesh_config("audit");
    let section = AuditSection {
        checkpoint_min_gap: min_gap.into(),
        ..section(db_url)
    };
    start_section(pki, config, section, None).await
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
    start_section(pki, config, section(db_url), users).await
}

/// Starts the audit service on `section`, in `pki`.
async fn start_section(
    pki: TestPki,
    config: cpis_mesh::config::MeshConfig,
    section: AuditSection,
    users: Option<Arc<TokenSigner>>,
) -> Harness {
    let db_url = section.database_url.clone();
    let db_url = db_url.as_str();
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
    let parts = cpis_audit::parts(&ctx, &section, &db, tokens).unwrap();
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
        self.users.sign(&claims(&self.ctx, "X26", activities))
    }

    /// A session token for a user of `org`, of kind `kind` (claim `ok`; none: a token
    /// issued before the claim existed), granted `activities`.
    pub fn token_of(&self, org: &str, kind: Option<&str>, activities: &[&str]) -> String {
        self.users.sign_session(&SessionClaims {
            claims: claims(&self.ctx, org, activities),
            ok: kind.map(str::to_owned),
        })
    }

    /// A client presenting the certificate of `org`'s system `system`.
    pub fn org_client(&self, org: &str, system: &str) -> AuditServiceClient<MeshChannel> {
        let files = self.pki.org_system(org, system);
        AuditServiceClient::new(
            cpis_mesh::client::channel(
                &format!("https://localhost:{}", self.server.addr.port()),
                &self.pki.tls(&files),
                &Metrics::new(),
                &ChannelSettings {
                    default_deadline: Duration::from_secs(30),
                    ..ChannelSettings::default()
                },
            )
            .unwrap(),
        )
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

fn claims(ctx: &MeshContext, org: &str, activities: &[&str]) -> Claims {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Claims {
        iss: ctx.config.tokens.issuer.clone(),
        sub: format!("officer-{org}"),
        aud: ctx.config.tokens.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: uuid::Uuid::new_v4().to_string(),
        org: org.into(),
        rp: "rp-officer".into(),
        role: "privacy-officer".into(),
        act: activities.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// The flag registry beside a scoped audit service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// Running, in process, on a real socket, in the same PKI.
    Up,
    /// Nothing listens at its address.
    Down,
}

/// An audit service whose local authorities' queries are checked against a flag registry.
pub struct Scoped {
    /// The audit service.
    pub audit: Harness,
    /// The flag registry (None when down).
    pub flags: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

/// The NHS numbers the flag registry's person register knows.
pub const CHILDREN: [&str; 3] = [CHILD, "9434765870", "4010232137"];

/// Starts the audit service on `db_url` and a flag registry on a database of the same kind,
/// both accepting tokens of the same signer.
pub async fn start_scoped(db_url: &str, flags: Flags) -> Scoped {
    use cpis_flag_registry::FlagsSection;
    use cpis_flag_registry::demographics::FixedRegister;
    use cpis_proto::identity::TraceOutcome;

    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let users = Arc::new(TokenSigner::generate("users-1").unwrap().0);
    let verifier = |ctx: &MeshContext| {
        TokenVerifier::new(
            Arc::new(StaticKeys(vec![users.verification_key()])),
            (&ctx.config.tokens).into(),
        )
    };
    let (server, flags_url) = match flags {
        Flags::Up => {
            let flags_url = if db_url.starts_with("postgres") {
                cpis_mesh::testkit::postgres_database().await
            } else {
                cpis_mesh::testkit::sqlite_database(dir.path(), "flags")
            };
            let db = Database::connect(&DatabaseSettings::new(&flags_url))
                .await
                .unwrap();
            db.migrate(&cpis_flag_registry::MIGRATIONS).await.unwrap();
            let ctx = MeshContext::new(
                pki.mesh_config("flag-registry"),
                Metrics::new(),
                Shutdown::new(),
            )
            .unwrap();
            let mut register = FixedRegister::default();
            for child in CHILDREN {
                register = register.with(child, TraceOutcome::Matched, None);
            }
            let section = FlagsSection {
                database_url: flags_url,
                ..FlagsSection::default()
            };
            let state =
                cpis_flag_registry::state(&ctx, &section, &db, verifier(&ctx), Arc::new(register))
                    .unwrap();
            let server = cpis_mesh::start(&ctx, cpis_flag_registry::parts(&ctx, Arc::new(state)))
                .await
                .unwrap();
            let url = format!("https://localhost:{}", server.addr.port());
            (Some(server), url)
        }
        Flags::Down => {
            // A port that was free a moment ago: connections are refused.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            (None, format!("https://localhost:{port}"))
        }
    };
    let config = pki.mesh_config("audit");
    let section = AuditSection {
        flags_url,
        flags_deadline: HumanDuration::from_millis(1500),
        ..section(db_url)
    };
    let audit = start_section(pki, config, section, Some(users)).await;
    Scoped {
        audit,
        flags: server,
        _dir: dir,
    }
}

impl Scoped {
    /// Flags `child` with a current child protection plan of `authority`, as the
    /// authority's case system and one of its social workers.
    pub async fn flag(&self, authority: &str, case: &str, child: &str) {
        use cpis_proto::common::{self, FlagKind};
        use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
        use cpis_proto::flags::{FlagRecord, UpsertFlagRequest};

        let flags = self.flags.as_ref().expect("the flag registry is running");
        let files = self.audit.pki.org_system(authority, "case-system");
        let channel = cpis_mesh::client::channel(
            &format!("https://localhost:{}", flags.addr.port()),
            &self.audit.pki.tls(&files),
            &Metrics::new(),
            &ChannelSettings::default(),
        )
        .unwrap();
        let token = self
            .audit
            .users
            .sign(&claims(&self.audit.ctx, authority, &["flag.manage"]));
        let mut request = tonic::Request::new(UpsertFlagRequest {
            authority: Some(common::LocalAuthority {
                code: Some(OdsCode {
                    value: authority.into(),
                }),
                name: format!("Authority {authority}"),
            }),
            contacts: Some(common::AuthorityContacts {
                office_hours_phone: "020 7974 3317".into(),
                emergency_duty_phone: "020 7974 4444".into(),
                secure_email: String::new(),
            }),
            record: Some(FlagRecord {
                case_reference: case.into(),
                nhs_number: Some(NhsNumber {
                    value: child.into(),
                }),
                date_of_birth: None,
                kind: FlagKind::ChildProtectionPlan as i32,
                looked_after_legal_basis: 0,
                expected_delivery_date: None,
                start_date: Some(common::Date {
                    year: 2025,
                    month: 1,
                    day: 6,
                }),
                end_date: None,
                delete_date: None,
            }),
            expected_version: None,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        FlagRegistryServiceClient::new(channel)
            .upsert_flag(request)
            .await
            .unwrap();
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
