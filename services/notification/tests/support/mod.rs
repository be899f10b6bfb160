//! The notification service in process, on a real database, with real mTLS clients.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the support"
)]

pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::config::ServiceSection;
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::duration::HumanDuration;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::token::{Claims, StaticKeys, TokenSigner, TokenVerifier};
use cpis_mesh::{MeshContext, RunningServer, Shutdown};
use cpis_notification::NotificationSection;
use cpis_proto::common::{CareSetting, NhsNumber, OdsCode, Principal};
use cpis_proto::notification::notification_service_client::NotificationServiceClient;
use cpis_proto::notification::{
    AttendanceNotice, NhsNumberChangeNotice, NotificationEvent, NotificationKind, PublishRequest,
    PublishResponse, notification_event,
};
use tonic::Request;
use tonic::metadata::MetadataValue;

/// A valid NHS number.
pub const CHILD: &str = "9434765919";
/// A local authority.
pub const AUTHORITY: &str = "E09000033";
/// Another local authority.
pub const OTHER_AUTHORITY: &str = "E08000025";

/// Changes a harness makes to its configuration section.
pub type Configure = Arc<dyn Fn(&mut NotificationSection) + Send + Sync>;

/// How a harness fans out live notifications, and its other settings.
#[derive(Clone, Default)]
pub struct Options {
    /// Redis URL and channel prefix; None: in process.
    pub redis: Option<(String, String)>,
    /// The keep-alive interval (default 15 s).
    pub keep_alive: Option<Duration>,
    /// Any other change to the section (after the harness's own: folding off, a short
    /// worker poll).
    pub configure: Option<Configure>,
}

/// A running notification service.
pub struct Harness {
    /// The PKI its peers use.
    pub pki: TestPki,
    /// The server.
    pub server: RunningServer,
    /// Its context.
    pub ctx: MeshContext,
    /// Signs users' tokens the service accepts.
    pub users: Arc<TokenSigner>,
    /// The service's database.
    pub db: Database,
}

/// Starts the service on `db_url`, fanning out in process.
pub async fn start(db_url: &str) -> Harness {
    start_with(db_url, Options::default(), None).await
}

/// Starts the service on `db_url` with `options`, users' tokens signed by `users` (or a
/// new key).
pub async fn start_with(
    db_url: &str,
    options: Options,
    users: Option<Arc<TokenSigner>>,
) -> Harness {
    let pki = TestPki::new();
    let config = pki.mesh_config("notification");
    let ctx = MeshContext::new(config, Metrics::new(), Shutdown::new()).unwrap();
    let db = Database::connect(&DatabaseSettings::new(db_url))
        .await
        .unwrap();
    db.migrate(&cpis_notification::MIGRATIONS).await.unwrap();
    let users = users.unwrap_or_else(|| Arc::new(TokenSigner::generate("users-1").unwrap().0));
    let tokens = TokenVerifier::new(
        Arc::new(StaticKeys(vec![users.verification_key()])),
        (&ctx.config.tokens).into(),
    );
    let mut section = NotificationSection {
        database_url: db_url.to_owned(),
        // No relay: the audit events stay in the outbox, where the tests read them.
        audit_address: String::new(),
        ..NotificationSection::default()
    };
    if let Some((url, prefix)) = options.redis {
        section.redis_url = Some(url);
        section.redis_channel_prefix = prefix;
    }
    if let Some(keep_alive) = options.keep_alive {
        section.keep_alive = HumanDuration::from(keep_alive);
    }
    // The inbox tests publish the same child at the same setting again and again: folding
    // is tested on its own.
    section.fold_window = HumanDuration::from_secs(0);
    section.worker_poll_interval = HumanDuration::from_millis(50);
    if let Some(configure) = &options.configure {
        configure(&mut section);
    }
    section.validate().unwrap();
    let fanout = cpis_notification::fanout(&ctx, &section).await.unwrap();
    let parts = cpis_notification::parts(&ctx, &section, &db, tokens, fanout).unwrap();
    let server = cpis_mesh::start(&ctx, parts).await.unwrap();
    Harness {
        pki,
        server,
        ctx,
        users,
        db,
    }
}

impl Harness {
    /// A client presenting workload `name`'s certificate, or an organisation system of
    /// `AUTHORITY`'s when `name` starts with `org:`.
    pub fn client(&self, name: &str) -> NotificationServiceClient<MeshChannel> {
        NotificationServiceClient::new(self.channel(name))
    }

    /// A channel as `name` (see [`client`](Self::client)).
    pub fn channel(&self, name: &str) -> MeshChannel {
        let files = match name.strip_prefix("org:") {
            Some(system) => self.pki.org_system(AUTHORITY, system),
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

    /// The inbox client of a case-management system.
    pub fn inbox(&self) -> NotificationServiceClient<MeshChannel> {
        self.client("org:case-management")
    }

    /// A session token for user `user` of organisation `org` granted `activities`.
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
            rp: "rp-social-worker".into(),
            role: "social_worker".into(),
            act: activities.iter().map(|a| (*a).to_owned()).collect(),
        })
    }

    /// A social worker of `AUTHORITY` allowed to read its inbox.
    pub fn social_worker(&self) -> String {
        self.token("sw-1", AUTHORITY, &["notification.read"])
    }

    /// Publishes `events` as the attendance service.
    pub async fn publish(&self, events: Vec<NotificationEvent>) -> PublishResponse {
        self.client("attendance")
            .publish(PublishRequest { events })
            .await
            .unwrap()
            .into_inner()
    }
}

impl Harness {
    /// The audit events waiting in the outbox, oldest first.
    pub async fn audit_events(&self) -> Vec<cpis_proto::audit::AuditEvent> {
        use prost::Message;
        const SQL: &str = "SELECT payload FROM outbox WHERE destination = 'audit' ORDER BY seq";
        let payloads: Vec<Vec<u8>> = match &self.db {
            Database::Postgres(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.unwrap(),
            Database::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.unwrap(),
        };
        payloads
            .iter()
            .map(|p| cpis_proto::audit::AuditEvent::decode(p.as_slice()).unwrap())
            .collect()
    }
}

/// `message` with the bearer `token`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

/// An attendance of `CHILD` at an emergency department, for `authority`, number `i`.
pub fn attendance(authority: &str, i: u32) -> NotificationEvent {
    NotificationEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        authority: Some(OdsCode {
            value: authority.into(),
        }),
        kind: NotificationKind::Attendance as i32,
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_760_000_000 + i64::from(i),
            nanos: 0,
        }),
        trace_context: None,
        payload: Some(notification_event::Payload::Attendance(AttendanceNotice {
            attendance_id: format!("att-{i}"),
            nhs_number: Some(NhsNumber {
                value: "943 476 5919".into(),
            }),
            care_setting: Some(CareSetting {
                organisation: Some(OdsCode {
                    value: "RJ1".into(),
                }),
                site: String::new(),
                setting_type: 1,
                name: "St Thomas' ED".into(),
                phone: "020 7188 7188".into(),
            }),
            practitioner: Some(Principal {
                user_id: "dr-1".into(),
                display_name: "Dr One".into(),
                role_profile_id: "rp-clinician".into(),
                role: "clinician".into(),
                organisation: Some(OdsCode {
                    value: "RJ1".into(),
                }),
            }),
            arrival_time: Some(prost_types::Timestamp {
                seconds: 1_760_000_000 + i64::from(i),
                nanos: 0,
            }),
            flags: Vec::new(),
        })),
    }
}

/// An upload's superseded-number event for `authority`.
pub fn superseded(authority: &str) -> NotificationEvent {
    NotificationEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        authority: Some(OdsCode {
            value: authority.into(),
        }),
        kind: NotificationKind::NhsNumberSuperseded as i32,
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_760_000_000,
            nanos: 0,
        }),
        trace_context: None,
        payload: Some(notification_event::Payload::NhsNumberChange(
            NhsNumberChangeNotice {
                nhs_number: Some(NhsNumber {
                    value: CHILD.into(),
                }),
                superseded_by: Some(NhsNumber {
                    value: "9999999999".into(),
                }),
                case_reference: "CASE-1".into(),
                upload_id: "up-1".into(),
                sequence_number: 1,
            },
        )),
    }
}
