//! The identity service on real sockets with real mTLS, over a fresh Postgres database or an
//! SQLite file, with a small directory, and clients for each class of peer.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the support"
)]

use std::sync::Arc;
use std::time::Duration;

use cpis_identity::audit::AuditActor;
use cpis_identity::directory::import::import_directory;
use cpis_identity::{IdentityHandle, IdentitySection};
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::duration::HumanDuration;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::{TestPki, postgres_database, sqlite_database};
use cpis_mesh::tls::TlsFiles;
use cpis_mesh::{Config, MeshContext, RunningServer, Shutdown};
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use cpis_proto::identity::{IssueTokenRequest, IssueTokenResponse};
use tonic::Request;

/// The key encryption key of tests.
pub const KEK: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
/// Every test user's credential.
pub const PASSWORD: &str = "correct horse battery";

/// The test directory: a trust with an emergency department, a local authority, and users.
pub const DIRECTORY: &str = r#"
version: 1
roles:
  - name: everything
    activities: [child.check, child.view, flag.manage, notification.read, audit.read]
organisations:
  - code: RJ1
    name: Guy's and St Thomas'
    kind: health
    care_settings:
      - site: RJ122
        type: EMERGENCY_DEPARTMENT
        name: St Thomas' Emergency Department
        phone: 020 7188 7188
      - type: GP_PRACTICE
  - code: E09000007
    name: London Borough of Camden
    kind: local_authority
    contacts:
      office_hours_phone: 020 7974 3317
      emergency_duty_phone: 020 7974 4444
      secure_email: mash@camden.gov.uk
users:
  - user_id: u-nurse
    username: nurse.jones
    display_name: Nurse Jones
    initial_credential: correct horse battery
    role_profiles:
      - id: rp-nurse
        organisation: RJ1
        role: clinician
  - user_id: u-social
    username: sw.patel
    display_name: Sam Patel
    initial_credential: correct horse battery
    role_profiles:
      - id: rp-social
        organisation: E09000007
        role: everything
  - user_id: u-admin
    username: admin.lee
    display_name: Alex Lee
    initial_credential: correct horse battery
    role_profiles:
      - id: rp-admin
        organisation: RJ1
        role: administrator
  - user_id: u-multi
    username: multi.role
    display_name: Morgan Role
    initial_credential: correct horse battery
    role_profiles:
      - id: rp-multi-clinician
        organisation: RJ1
        role: clinician
      - id: rp-multi-clerk
        organisation: RJ1
        role: registration_clerk
"#;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh database on the test Postgres server.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// A database for one test; the directory of an SQLite file lives as long as this.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh, empty database.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self {
                url: postgres_database().await,
                _dir: None,
            },
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    url: sqlite_database(dir.path(), "identity"),
                    _dir: Some(dir),
                }
            }
        }
    }
}

/// The identity section of tests: fast limits, no Redis.
pub fn section(database_url: &str) -> IdentitySection {
    IdentitySection {
        database_url: database_url.to_owned(),
        key_encryption_key: Some(KEK.to_owned()),
        // No audit service in these tests: events stay in the outbox, where tests read them.
        audit_address: String::new(),
        username_failure_limit: 3,
        system_failure_limit: 50,
        failure_window: HumanDuration::from_secs(60),
        lockout_duration: HumanDuration::from_secs(1),
        ..IdentitySection::default()
    }
}

/// A running identity service.
pub struct TestIdentity {
    /// The PKI its peers' certificates come from.
    pub pki: TestPki,
    /// The server.
    pub server: RunningServer,
    /// Its context.
    pub ctx: MeshContext,
    /// Its insides.
    pub handle: IdentityHandle,
    /// Its database.
    pub database: TestDatabase,
}

impl TestIdentity {
    /// Starts identity on `backend` with the test directory imported.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts identity on `backend`, its section adjusted by `adjust`, with the directory.
    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut Config<IdentitySection>),
    ) -> Self {
        let pki = TestPki::new();
        let database = TestDatabase::new(backend).await;
        let mut config = Config {
            mesh: pki.mesh_config("identity"),
            service: section(&database.url),
        };
        adjust(&mut config);
        let ctx = MeshContext::new(config.mesh.clone(), Metrics::new(), Shutdown::new()).unwrap();
        let (parts, handle) = cpis_identity::build(&ctx, &config).await.unwrap();
        let server = cpis_mesh::start(&ctx, parts).await.unwrap();
        let state = &handle.state;
        import_directory(
            state.store.as_ref(),
            &state.hasher,
            12,
            DIRECTORY,
            false,
            &AuditActor::tool("test"),
        )
        .await
        .unwrap();
        Self {
            pki,
            server,
            ctx,
            handle,
            database,
        }
    }

    /// A client presenting `files`.
    pub fn client_as(&self, files: &TlsFiles) -> IdentityServiceClient<MeshChannel> {
        let channel = cpis_mesh::client::channel(
            &format!("https://localhost:{}", self.server.addr.port()),
            &self.pki.tls(files),
            &Metrics::new(),
            &ChannelSettings::default(),
        )
        .unwrap();
        IdentityServiceClient::new(channel)
    }

    /// A client that is the organisation system `system` of `ods`.
    pub fn org_client(&self, ods: &str, system: &str) -> IdentityServiceClient<MeshChannel> {
        self.client_as(&self.pki.org_system(ods, system))
    }

    /// A client that is the mesh service `name`.
    pub fn service_client(&self, name: &str) -> IdentityServiceClient<MeshChannel> {
        self.client_as(&self.pki.workload(name))
    }

    /// A mesh channel of the service `name` to identity (for key sources).
    pub fn service_channel(&self, name: &str) -> MeshChannel {
        cpis_mesh::client::channel(
            &format!("https://localhost:{}", self.server.addr.port()),
            &self.pki.tls(&self.pki.workload(name)),
            &Metrics::new(),
            &ChannelSettings::default(),
        )
        .unwrap()
    }

    /// Signs `username` in through the edge-less system `RJ1/ehr` (or `E09000007/case` for
    /// the local authority user) with `role_profile_id`.
    pub async fn sign_in(&self, username: &str, role_profile_id: &str) -> IssueTokenResponse {
        let (ods, system) = if username == "sw.patel" {
            ("E09000007", "case")
        } else {
            ("RJ1", "ehr")
        };
        self.org_client(ods, system)
            .issue_token(IssueTokenRequest {
                username: username.to_owned(),
                credential: PASSWORD.to_owned(),
                role_profile_id: role_profile_id.to_owned(),
            })
            .await
            .unwrap_or_else(|s| panic!("{username} signs in: {s:?}"))
            .into_inner()
    }

    /// The admin's token.
    pub async fn admin_token(&self) -> String {
        self.sign_in("admin.lee", "").await.access_token
    }

    /// How many calls of `method` the server has answered, whatever their status.
    pub fn served(&self, method: &str) -> u64 {
        let label = format!("method=\"{method}\"");
        self.ctx
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("cpis_rpc_server_requests_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The Redis server tests use.
pub fn redis_url() -> String {
    std::env::var("CPIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("cpis:test:{}:", uuid::Uuid::new_v4().simple())
}

/// Polls `condition` every 50 ms for up to `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shared store of a running service.
pub fn store(test: &TestIdentity) -> Arc<dyn cpis_identity::store::IdentityStore> {
    test.handle.state.store.clone()
}

/// Runs each async test body `name(Backend)` once per backend, as `name::postgres` and
/// `name::sqlite`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await;
            }
        }
    )*};
}
