//! Attendance in process on real sockets with real mTLS, over a fresh Postgres database or
//! an SQLite file, checking against the real flag registry (in process too, in the same
//! PKI, on a database of the same kind), and clients for the care setting's system.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the support"
)]

use std::sync::Arc;
use std::time::Duration;

use cpis_attendance::AttendanceSection;
use cpis_domain::NhsNumber;
use cpis_flag_registry::FlagsSection;
use cpis_flag_registry::demographics::FixedRegister;
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::token::{Claims, StaticKeys, TokenSigner, TokenVerifier};
use cpis_mesh::{MeshContext, RunningServer, Shutdown};
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::attendance::{RecordAttendanceRequest, RecordAttendanceResponse};
use cpis_proto::common::{self, CareSettingType};
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{FlagRecord, UpsertFlagRequest};
use cpis_proto::identity::TraceOutcome;
use prost::Message;
use tonic::Request;

/// Camden, an authority.
pub const CAMDEN: &str = "E09000007";
/// Islington, another authority.
pub const ISLINGTON: &str = "E09000019";
/// The trust whose emergency department checks children.
pub const TRUST: &str = "RAL";
/// Another trust.
pub const OTHER_TRUST: &str = "RRV";

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

/// How the flag registry behaves for a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// Running.
    Up,
    /// A listener that accepts connections and never answers.
    Hanging,
    /// Nothing listening at its address: connections are refused at once.
    Unreachable,
}

/// A running attendance service and flag registry.
pub struct Mesh {
    /// The PKI of every peer.
    pub pki: TestPki,
    /// Signs users' tokens both services accept.
    pub users: Arc<TokenSigner>,
    /// The attendance server.
    pub server: RunningServer,
    /// Its context.
    pub ctx: MeshContext,
    /// Its database.
    pub db: Database,
    /// The flag registry's server (None when it is down).
    pub flags: Option<RunningServer>,
    /// The flag registry's database.
    pub flags_db: Database,
    _hanging: Option<std::net::TcpListener>,
    _dir: tempfile::TempDir,
}

/// Starts both services, attendance on `db_url`.
pub async fn start(db_url: &str) -> Mesh {
    start_with(db_url, Flags::Up).await
}

async fn database(url: &str, migrations: &cpis_mesh::db::Migrations) -> Database {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(migrations).await.unwrap();
    db
}

/// Starts both services, attendance on `db_url`, the flag registry as `flags` says.
pub async fn start_with(db_url: &str, flags: Flags) -> Mesh {
    let users = Arc::new(TokenSigner::generate("users-1").unwrap().0);
    start_in(TestPki::new(), users, db_url, flags, Sinks::default()).await
}

/// Where attendance's outbox relay ships (empty: no relay; the events wait).
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// The audit service's address.
    pub audit: String,
    /// The notification service's address.
    pub notification: String,
}

/// The verifier of tokens signed by `users`, with `ctx`'s rules.
pub fn verifier(users: &TokenSigner, ctx: &MeshContext) -> TokenVerifier {
    TokenVerifier::new(
        Arc::new(StaticKeys(vec![users.verification_key()])),
        (&ctx.config.tokens).into(),
    )
}

/// Starts both services in `pki`, users' tokens signed by `users`, attendance on `db_url`
/// shipping its outbox to `sinks`.
pub async fn start_in(
    pki: TestPki,
    users: Arc<TokenSigner>,
    db_url: &str,
    flags: Flags,
    sinks: Sinks,
) -> Mesh {
    start_configured(pki, users, db_url, flags, sinks, |_| {}).await
}

/// Starts both services, attendance on `db_url` with its section changed by `configure`.
pub async fn start_with_section(
    db_url: &str,
    flags: Flags,
    configure: impl FnOnce(&mut AttendanceSection),
) -> Mesh {
    let users = Arc::new(TokenSigner::generate("users-1").unwrap().0);
    start_configured(
        TestPki::new(),
        users,
        db_url,
        flags,
        Sinks::default(),
        configure,
    )
    .await
}

/// [`start_in`], attendance's section changed by `configure`.
pub async fn start_configured(
    pki: TestPki,
    users: Arc<TokenSigner>,
    db_url: &str,
    flags: Flags,
    sinks: Sinks,
    configure: impl FnOnce(&mut AttendanceSection),
) -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let verifier = |ctx: &MeshContext| verifier(&users, ctx);

    // The flag registry, on a database of the same kind as attendance's.
    let flags_url = if db_url.starts_with("postgres") {
        cpis_mesh::testkit::postgres_database().await
    } else {
        cpis_mesh::testkit::sqlite_database(dir.path(), "flags")
    };
    let flags_db = database(&flags_url, &cpis_flag_registry::MIGRATIONS).await;
    let flags_ctx = MeshContext::new(
        pki.mesh_config("flag-registry"),
        Metrics::new(),
        Shutdown::new(),
    )
    .unwrap();
    let mut register = FixedRegister::default();
    for n in 1..=30 {
        register = register.with(&nhs(n), TraceOutcome::Matched, None);
    }
    let section = FlagsSection {
        database_url: flags_url.clone(),
        ..FlagsSection::default()
    };
    let state = cpis_flag_registry::state(
        &flags_ctx,
        &section,
        &flags_db,
        verifier(&flags_ctx),
        Arc::new(register),
    )
    .unwrap();
    let (flags_server, hanging, flags_address) = match flags {
        Flags::Up => {
            let server = cpis_mesh::start(
                &flags_ctx,
                cpis_flag_registry::parts(&flags_ctx, Arc::new(state)),
            )
            .await
            .unwrap();
            let address = format!("https://localhost:{}", server.addr.port());
            (Some(server), None, address)
        }
        Flags::Hanging => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = format!(
                "https://localhost:{}",
                listener.local_addr().unwrap().port()
            );
            (None, Some(listener), address)
        }
        Flags::Unreachable => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            (None, None, format!("https://localhost:{port}"))
        }
    };

    let ctx = MeshContext::new(
        pki.mesh_config("attendance"),
        Metrics::new(),
        Shutdown::new(),
    )
    .unwrap();
    let db = database(db_url, &cpis_attendance::MIGRATIONS).await;
    let mut section = AttendanceSection {
        database_url: db_url.to_owned(),
        flags_url: flags_address,
        flags_deadline: cpis_mesh::duration::HumanDuration::from_millis(500),
        // Empty: the events wait in the outbox, where the tests read them.
        audit_address: sinks.audit,
        notification_address: sinks.notification,
        ..AttendanceSection::default()
    };
    configure(&mut section);
    let parts = cpis_attendance::parts(&ctx, &section, &db, verifier(&ctx)).unwrap();
    let server = cpis_mesh::start(&ctx, parts).await.unwrap();
    Mesh {
        pki,
        users,
        server,
        ctx,
        db,
        flags: flags_server,
        flags_db,
        _hanging: hanging,
        _dir: dir,
    }
}

fn channel(pki: &TestPki, files: &cpis_mesh::tls::TlsFiles, port: u16) -> MeshChannel {
    cpis_mesh::client::channel(
        &format!("https://localhost:{port}"),
        &pki.tls(files),
        &Metrics::new(),
        &ChannelSettings {
            default_deadline: Duration::from_secs(30),
            ..ChannelSettings::default()
        },
    )
    .unwrap()
}

impl Mesh {
    /// A client presenting the certificate of `ods`'s EHR.
    pub fn ehr(&self, ods: &str) -> AttendanceServiceClient<MeshChannel> {
        let files = self.pki.org_system(ods, "ehr");
        AttendanceServiceClient::new(channel(&self.pki, &files, self.server.addr.port()))
    }

    /// A session token for user `user` of `org` granted `activities`.
    pub fn token(&self, user: &str, org: &str, role: &str, activities: &[&str]) -> String {
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
            role: role.into(),
            act: activities.iter().map(|a| (*a).to_owned()).collect(),
        })
    }

    /// A clinician of `org` allowed to check and view children.
    pub fn clinician(&self, org: &str) -> String {
        self.token(
            "u-clinician",
            org,
            "clinician",
            &["child.check", "child.view"],
        )
    }

    /// Flags child `number` with a current child protection plan of `authority`.
    pub async fn flag(&self, authority: &str, case: &str, number: &str) {
        self.upsert(cpp(authority, case, number)).await;
    }

    /// Flags child `number` with a child protection plan of `authority` that ended `ago`
    /// (and started a year before).
    pub async fn flag_ended(&self, authority: &str, case: &str, number: &str, ago: time::Duration) {
        let end = time::OffsetDateTime::now_utc().date() - ago;
        let mut request = cpp(authority, case, number);
        let record = request.record.as_mut().unwrap();
        record.start_date = Some(wire(end - time::Duration::days(365)));
        record.end_date = Some(wire(end));
        self.upsert(request).await;
    }

    async fn upsert(&self, request: UpsertFlagRequest) {
        let authority = request
            .authority
            .as_ref()
            .and_then(|a| a.code.as_ref())
            .map(|c| c.value.clone())
            .unwrap();
        let authority = authority.as_str();
        let flags = self.flags.as_ref().expect("the flag registry is running");
        let files = self.pki.org_system(authority, "case-system");
        let mut client =
            FlagRegistryServiceClient::new(channel(&self.pki, &files, flags.addr.port()));
        let token = self.token("u-social", authority, "social-worker", &["flag.manage"]);
        client.upsert_flag(authed(&token, request)).await.unwrap();
    }

    /// Checks `number` at `trust`'s setting of `setting` type as `token`'s user.
    pub async fn check(
        &self,
        token: &str,
        trust: &str,
        setting: CareSettingType,
        number: &str,
    ) -> Result<RecordAttendanceResponse, tonic::Status> {
        self.ehr(trust)
            .record_attendance(authed(token, request(trust, setting, number)))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The outbox rows of attendance: (destination, payload), in order.
    pub async fn outbox(&self) -> Vec<(String, Vec<u8>)> {
        let sql = "SELECT destination, payload FROM outbox ORDER BY seq";
        match &self.db {
            Database::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
            Database::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        }
    }

    /// The audit events in attendance's outbox, in order.
    pub async fn audit_events(&self) -> Vec<cpis_proto::audit::AuditEvent> {
        self.outbox()
            .await
            .into_iter()
            .filter(|(d, _)| d == "audit")
            .map(|(_, p)| cpis_proto::audit::AuditEvent::decode(p.as_slice()).unwrap())
            .collect()
    }

    /// The notification events in attendance's outbox, in order.
    pub async fn notification_events(&self) -> Vec<cpis_proto::notification::NotificationEvent> {
        self.outbox()
            .await
            .into_iter()
            .filter(|(d, _)| d == "notification")
            .map(|(_, p)| {
                cpis_proto::notification::NotificationEvent::decode(p.as_slice()).unwrap()
            })
            .collect()
    }

    /// How many attendances are stored for `number`.
    pub async fn attendances_of(&self, number: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM attendances WHERE nhs_number = $1";
        match &self.db {
            Database::Postgres(pool) => sqlx::query_scalar(sql)
                .bind(number)
                .fetch_one(pool)
                .await
                .unwrap(),
            Database::Sqlite(pool) => sqlx::query_scalar(sql)
                .bind(number)
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }

    /// How many times the flag registry answered GetFlags (its own audit of reads).
    /// Waits until the flag registry has recorded at least `expected` reads (a check's read
    /// is recorded without holding the answer back), then asserts exactly `expected`.
    pub async fn assert_flag_reads(&self, expected: i64, what: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.flag_reads().await < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(self.flag_reads().await, expected, "{what}");
    }

    pub async fn flag_reads(&self) -> i64 {
        let payloads: Vec<Vec<u8>> = match &self.flags_db {
            Database::Postgres(pool) => {
                sqlx::query_scalar("SELECT payload FROM outbox WHERE destination = 'audit'")
                    .fetch_all(pool)
                    .await
                    .unwrap()
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar("SELECT payload FROM outbox WHERE destination = 'audit'")
                    .fetch_all(pool)
                    .await
                    .unwrap()
            }
        };
        let reads = payloads
            .iter()
            .map(|p| cpis_proto::audit::AuditEvent::decode(p.as_slice()).unwrap())
            .filter(|e| e.action == cpis_flag_registry::audit::GET)
            .count();
        i64::try_from(reads).unwrap()
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

/// A check of `number` at `trust`'s setting of type `setting`.
pub fn request(trust: &str, setting: CareSettingType, number: &str) -> RecordAttendanceRequest {
    RecordAttendanceRequest {
        nhs_number: Some(common::NhsNumber {
            value: number.into(),
        }),
        care_setting: Some(common::CareSetting {
            organisation: Some(common::OdsCode {
                value: trust.into(),
            }),
            site: "RAL01".into(),
            setting_type: setting as i32,
            name: "Royal Free Emergency Department".into(),
            phone: "020 7794 0500".into(),
        }),
        arrival_time: None,
        request_id: String::new(),
    }
}

/// The wire form of a date.
pub fn wire(date: time::Date) -> common::Date {
    common::Date {
        year: date.year(),
        month: i32::from(u8::from(date.month())),
        day: i32::from(date.day()),
    }
}

/// A current child protection plan of `authority` for `number` under `case`.
pub fn cpp(authority: &str, case: &str, number: &str) -> UpsertFlagRequest {
    UpsertFlagRequest {
        authority: Some(common::LocalAuthority {
            code: Some(common::OdsCode {
                value: authority.into(),
            }),
            name: format!("Authority {authority}"),
        }),
        contacts: Some(common::AuthorityContacts {
            office_hours_phone: "020 7974 3317".into(),
            emergency_duty_phone: "020 7974 4444".into(),
            secure_email: format!("mash@{authority}.gov.uk"),
        }),
        record: Some(FlagRecord {
            case_reference: case.into(),
            nhs_number: Some(common::NhsNumber {
                value: number.into(),
            }),
            date_of_birth: None,
            kind: common::FlagKind::ChildProtectionPlan as i32,
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
    }
}
