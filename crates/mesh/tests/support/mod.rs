//! A small test service on the mesh runtime: the attendance contract, answered by a handler
//! that records who called and with which trace context, validates the NHS number, and
//! sleeps when asked to, so tests can watch every layer over real sockets.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the support"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpis_mesh::authz::{AccessPolicy, Caller, PeerClass};
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::config::MeshConfig;
use cpis_mesh::error::ApiError;
use cpis_mesh::health::DependencyCheck;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::tls::TlsFiles;
use cpis_mesh::{MeshContext, RunningServer, ServiceParts, Shutdown};
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::attendance::attendance_service_server::{
    AttendanceService, AttendanceServiceServer,
};
use cpis_proto::attendance::{
    ListAttendancesRequest, ListAttendancesResponse, RecordAttendanceRequest,
    RecordAttendanceResponse,
};
use cpis_proto::common::{CareSetting, CareSettingType, NhsNumber, OdsCode};
use futures_util::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};

/// The fully-qualified name of the test service.
pub const SERVICE: &str = "cpis.attendance.v1.AttendanceService";
/// A valid NHS number.
pub const VALID_NHS_NUMBER: &str = "943 476 5919";
/// A site name that makes the handler sleep for two seconds.
pub const SLOW_SITE: &str = "slow";

/// What the handler saw of one call.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The caller the runtime resolved.
    pub caller: Option<Caller>,
    /// The `traceparent` metadata as it arrived.
    pub traceparent: Option<String>,
    /// Whether an `x-forwarded-client-cert` header reached the handler.
    pub forwarded_header_visible: bool,
}

/// The calls the handler saw.
#[derive(Debug, Clone, Default)]
pub struct Observed(Arc<Mutex<Vec<Seen>>>);

impl Observed {
    /// Everything seen so far.
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// The last call seen.
    pub fn last(&self) -> Seen {
        self.all().pop().expect("the handler saw a call")
    }
}

#[derive(Debug, Clone)]
struct TestAttendance {
    observed: Observed,
}

#[tonic::async_trait]
impl AttendanceService for TestAttendance {
    async fn record_attendance(
        &self,
        request: tonic::Request<RecordAttendanceRequest>,
    ) -> Result<tonic::Response<RecordAttendanceResponse>, tonic::Status> {
        let metadata = request.metadata();
        self.observed.0.lock().unwrap().push(Seen {
            caller: request.extensions().get::<Caller>().cloned(),
            traceparent: metadata
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            forwarded_header_visible: metadata.get("x-forwarded-client-cert").is_some(),
        });
        let body = request.into_inner();
        let number = body.nhs_number.map(|n| n.value).unwrap_or_default();
        if let Err(error) = number.parse::<cpis_domain::NhsNumber>() {
            return Err(ApiError::invalid("nhs_number", error.to_string()).into());
        }
        if body.care_setting.is_some_and(|s| s.site == SLOW_SITE) {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(tonic::Response::new(RecordAttendanceResponse {
            check_id: "check-1".to_owned(),
            ..Default::default()
        }))
    }

    async fn list_attendances(
        &self,
        _request: tonic::Request<ListAttendancesRequest>,
    ) -> Result<tonic::Response<ListAttendancesResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListAttendancesResponse::default()))
    }
}

/// A dependency whose health a test switches.
#[derive(Debug, Clone)]
pub struct Switch(pub Arc<AtomicBool>);

impl Switch {
    /// A switch that starts `up`.
    pub fn new(up: bool) -> Self {
        Self(Arc::new(AtomicBool::new(up)))
    }

    /// Turns the dependency up or down.
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::SeqCst);
    }
}

impl DependencyCheck for Switch {
    fn name(&self) -> &str {
        "switch"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let up = self.0.load(Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Ok(())
            } else {
                Err("switched off".to_owned())
            }
        })
    }
}

/// The test service, running.
pub struct TestServer {
    /// The running server (addresses, health).
    pub server: RunningServer,
    /// Its context (shutdown, metrics, TLS).
    pub ctx: MeshContext,
    /// What its handler saw.
    pub observed: Observed,
}

/// The policy of the test service: organisation systems may record attendances; only the
/// notification service may list them.
pub fn policy(ctx: &MeshContext) -> AccessPolicy {
    ctx.policy()
        .allow_method(
            &format!("{SERVICE}/RecordAttendance"),
            [PeerClass::OrgSystem],
        )
        .allow_method(
            &format!("{SERVICE}/ListAttendances"),
            [PeerClass::service("notification")],
        )
}

/// Starts the test service as workload `attendance` with `config` and `checks`.
pub async fn start_with(config: MeshConfig, checks: Vec<Arc<dyn DependencyCheck>>) -> TestServer {
    let ctx = MeshContext::new(config, Metrics::new(), Shutdown::new()).expect("context");
    let observed = Observed::default();
    let service = TestAttendance {
        observed: observed.clone(),
    };
    let parts = ServiceParts {
        workload: "attendance",
        routes: Routes::new(AttendanceServiceServer::new(service)),
        service_names: vec![SERVICE],
        policy: policy(&ctx),
        checks,
    };
    let server = cpis_mesh::start(&ctx, parts).await.expect("server starts");
    TestServer {
        server,
        ctx,
        observed,
    }
}

/// Starts the test service with the test PKI's defaults.
pub async fn start(pki: &TestPki) -> TestServer {
    start_with(pki.mesh_config("attendance"), Vec::new()).await
}

/// A client of the test service at `port` presenting the bundle `files`.
pub fn client(pki: &TestPki, files: &TlsFiles, port: u16) -> AttendanceServiceClient<MeshChannel> {
    let channel = cpis_mesh::client::channel(
        &format!("https://localhost:{port}"),
        &pki.tls(files),
        &Metrics::new(),
        &ChannelSettings::default(),
    )
    .expect("channel");
    AttendanceServiceClient::new(channel)
}

/// A request for `nhs_number` at an emergency department of RJ1.
pub fn check(nhs_number: &str) -> RecordAttendanceRequest {
    RecordAttendanceRequest {
        nhs_number: Some(NhsNumber {
            value: nhs_number.to_owned(),
        }),
        care_setting: Some(CareSetting {
            organisation: Some(OdsCode {
                value: "RJ1".to_owned(),
            }),
            site: "main".to_owned(),
            setting_type: CareSettingType::EmergencyDepartment as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A rustls client trusting `ca_pem`, presenting `identity` (certificate and key PEM) if any:
/// for clients the runtime itself would refuse to build.
pub fn rustls_client(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(cpis_mesh::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A channel to `localhost:port` over TLS with `config`.
pub fn channel_with(config: Arc<rustls::ClientConfig>, port: u16) -> Channel {
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .connect_with_connector_lazy(connector)
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

/// The admin port's `/metrics` text, fetched with a plain HTTP/1.1 request.
pub async fn scrape(admin: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}
