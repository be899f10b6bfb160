//! The flag registry in process on real sockets with real mTLS, over a fresh Postgres
//! database or an SQLite file, with a fixed person register, and clients for each class of
//! peer.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the support"
)]

use std::sync::Arc;
use std::time::Duration;

use cpis_domain::NhsNumber;
use cpis_flag_registry::cache::FlagCache;
use cpis_flag_registry::clock::Clock;
use cpis_flag_registry::demographics::{Demographics, FixedRegister};
use cpis_flag_registry::{FlagRegistryState, FlagsSection};
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::token::{Claims, StaticKeys, TokenSigner, TokenVerifier};
use cpis_mesh::{MeshContext, RunningServer, Shutdown};
use cpis_proto::common;
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{FlagRecord, UpsertFlagRequest};
use cpis_proto::identity::TraceOutcome;
use time::{Date, Month};
use tonic::Request;

/// The authority of most tests (Camden) and another one (Islington).
pub const CAMDEN: &str = "E09000007";
/// Another authority.
pub const ISLINGTON: &str = "E09000019";

/// The `n`th synthetic NHS number (999 prefix, valid check digit).
pub fn nhs(n: u32) -> String {
    let mut candidate = 999_000_000 + n * 13;
    loop {
        let digits: Vec<u8> = candidate.to_string().bytes().map(|b| b - b'0').collect();
        let prefix: [u8; 9] = digits.try_into().unwrap();
        if let Some(number) = NhsNumber::from_prefix(&prefix) {
            return number.as_str().to_owned();
        }
        candidate += 1;
    }
}

/// Persons of the test register: 1..=20 matched; and the special ones below.
pub fn no_match() -> String {
    nhs(100)
}
/// A sensitive record.
pub fn sensitive() -> String {
    nhs(101)
}
/// An inactive record.
pub fn inactive() -> String {
    nhs(102)
}
/// A superseded number, replaced by `nhs(1)`.
pub fn superseded() -> String {
    nhs(103)
}

/// A record whose date of birth does not verify.
pub fn not_verified() -> String {
    nhs(104)
}

/// The register every test traces against.
pub fn register() -> FixedRegister {
    let mut register = FixedRegister::default();
    for i in 1..=20 {
        register = register.with(&nhs(i), TraceOutcome::Matched, None);
    }
    register
        .with(&sensitive(), TraceOutcome::Sensitive, None)
        .with(&inactive(), TraceOutcome::Inactive, None)
        .with(&superseded(), TraceOutcome::Superseded, Some(&nhs(1)))
        .with(&not_verified(), TraceOutcome::NotVerified, None)
}

/// A calendar date.
pub fn date(y: i32, m: u8, d: u8) -> Date {
    Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap()
}

/// A wire date.
pub fn wire(y: i32, m: u8, d: u8) -> common::Date {
    common::Date {
        year: y,
        month: i32::from(m),
        day: i32::from(d),
    }
}

/// The pinned "today" of tests.
pub fn today() -> Date {
    date(2026, 6, 15)
}

/// A running flag registry.
pub struct Harness {
    /// The PKI its peers use.
    pub pki: TestPki,
    /// The server.
    pub server: RunningServer,
    /// Its context.
    pub ctx: MeshContext,
    /// Signs users' tokens the service accepts.
    pub users: Arc<TokenSigner>,
    /// The database.
    pub db: Database,
    /// The clock, pinned to [`today`].
    pub clock: Clock,
}

/// How a test wants the service.
pub struct Options {
    /// The cache (default: in process).
    pub cache: Option<FlagCache>,
    /// The register (default: [`register`]).
    pub register: FixedRegister,
    /// Another person register instead (e.g. identity's over the mesh).
    pub demographics: Option<Arc<dyn Demographics>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache: None,
            register: register(),
            demographics: None,
        }
    }
}

/// Starts the flag registry on `db_url` with the default options.
pub async fn start(db_url: &str) -> Harness {
    start_with(db_url, Options::default()).await
}

/// Starts the flag registry on `db_url`.
pub async fn start_with(db_url: &str, options: Options) -> Harness {
    let pki = TestPki::new();
    let config = pki.mesh_config("flag-registry");
    let ctx = MeshContext::new(config, Metrics::new(), Shutdown::new()).unwrap();
    let db = Database::connect(&DatabaseSettings::new(db_url))
        .await
        .unwrap();
    db.migrate(&cpis_flag_registry::MIGRATIONS).await.unwrap();
    let users = Arc::new(TokenSigner::generate("users-1").unwrap().0);
    let tokens = TokenVerifier::new(
        Arc::new(StaticKeys(vec![users.verification_key()])),
        (&ctx.config.tokens).into(),
    );
    let section = FlagsSection {
        database_url: db_url.to_owned(),
        ..FlagsSection::default()
    };
    let mut state: FlagRegistryState = cpis_flag_registry::state(
        &ctx,
        &section,
        &db,
        tokens,
        options
            .demographics
            .unwrap_or_else(|| Arc::new(options.register)),
    )
    .unwrap();
    if let Some(cache) = options.cache {
        state.cache = cache;
    }
    let clock = Clock::pinned(today());
    state.clock = clock.clone();
    let parts = cpis_flag_registry::parts(&ctx, Arc::new(state));
    let server = cpis_mesh::start(&ctx, parts).await.unwrap();
    Harness {
        pki,
        server,
        ctx,
        users,
        db,
        clock,
    }
}

impl Harness {
    /// A client presenting workload `name`'s certificate, or organisation system
    /// `<ods>/case-system`'s when `name` is `org:<ods>`.
    pub fn client(&self, name: &str) -> FlagRegistryServiceClient<MeshChannel> {
        let files = match name.strip_prefix("org:") {
            Some(ods) => self.pki.org_system(ods, "case-system"),
            None => self.pki.workload(name),
        };
        let channel = cpis_mesh::client::channel(
            &format!("https://localhost:{}", self.server.addr.port()),
            &self.pki.tls(&files),
            &Metrics::new(),
            &ChannelSettings {
                default_deadline: Duration::from_secs(30),
                ..ChannelSettings::default()
            },
        )
        .unwrap();
        FlagRegistryServiceClient::new(channel)
    }

    /// A session token for user `user` of `org` granted `activities`.
    pub fn token(&self, user: &str, org: &str, activities: &[&str]) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.users.sign(&Claims {
            iss: self.ctx.config.tokens.issuer.clone(),
            sub: user.into(),
            aud: self.ctx.config.tokens.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: uuid::Uuid::new_v4().to_string(),
            org: org.into(),
            rp: format!("rp-{user}"),
            role: "social-worker".into(),
            act: activities.iter().map(|a| (*a).to_owned()).collect(),
        })
    }

    /// A social worker of `org` allowed to manage flags.
    pub fn manager(&self, org: &str) -> String {
        self.token("u-social", org, &["flag.manage"])
    }

    /// The audit actions in the outbox, in order.
    /// Waits until `n` audit events are in the outbox (a check's read is recorded without
    /// holding its answer back), or fails after ten seconds.
    pub async fn await_audit_events(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.audit_events().await.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} audit events"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn audit_actions(&self) -> Vec<(String, i32)> {
        self.audit_events()
            .await
            .into_iter()
            .map(|event| (event.action, event.outcome))
            .collect()
    }

    /// The audit events in the outbox, in order.
    pub async fn audit_events(&self) -> Vec<cpis_proto::audit::AuditEvent> {
        use prost::Message;
        let payloads: Vec<Vec<u8>> = match &self.db {
            Database::Postgres(pool) => sqlx::query_scalar(
                "SELECT payload FROM outbox WHERE destination = 'audit' ORDER BY seq",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            Database::Sqlite(pool) => sqlx::query_scalar(
                "SELECT payload FROM outbox WHERE destination = 'audit' ORDER BY seq",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
        };
        payloads
            .iter()
            .map(|p| cpis_proto::audit::AuditEvent::decode(p.as_slice()).unwrap())
            .collect()
    }
}

/// A request carrying `token`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Camden's contacts.
pub fn contacts() -> common::AuthorityContacts {
    common::AuthorityContacts {
        office_hours_phone: "020 7974 3317".into(),
        emergency_duty_phone: "020 7974 4444".into(),
        secure_email: "mash@camden.gov.uk".into(),
    }
}

/// A child protection plan of `authority` for `number` under `case`, started 1 March 2026.
pub fn cpp(authority: &str, case: &str, number: &str) -> UpsertFlagRequest {
    UpsertFlagRequest {
        authority: Some(common::LocalAuthority {
            code: Some(common::OdsCode {
                value: authority.into(),
            }),
            name: format!("Authority {authority}"),
        }),
        contacts: Some(contacts()),
        record: Some(FlagRecord {
            case_reference: case.into(),
            nhs_number: Some(common::NhsNumber {
                value: number.into(),
            }),
            date_of_birth: None,
            kind: common::FlagKind::ChildProtectionPlan as i32,
            looked_after_legal_basis: 0,
            expected_delivery_date: None,
            start_date: Some(wire(2026, 3, 1)),
            end_date: None,
            delete_date: None,
        }),
        expected_version: None,
    }
}
