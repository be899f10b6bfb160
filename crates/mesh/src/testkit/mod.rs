//! Test helpers for services built on the mesh: a development PKI in a temporary directory,
//! configurations bound to `127.0.0.1:0`, and an in-test OTLP receiver (no collector binary
//! can be had here, so tests receive spans themselves).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{ConfigSource, MeshConfig, ServiceDefaults};
use crate::devpki::{DevCa, IssuedCert};
use crate::duration::HumanDuration;
use crate::tls::{MeshTls, TlsFiles};

pub mod process;

/// The trust domain of test PKIs.
pub const TRUST_DOMAIN: &str = "cpis.local";
/// The namespace of test workloads.
pub const NAMESPACE: &str = "cpis";
/// A fixed NHS-number hash key for tests.
pub const TEST_HASH_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A development CA with its files in a temporary directory that lives as long as this.
#[derive(Debug)]
pub struct TestPki {
    /// The directory holding every bundle.
    pub dir: tempfile::TempDir,
    /// The CA.
    pub ca: DevCa,
}

impl TestPki {
    /// A fresh CA for [`TRUST_DOMAIN`].
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            ca: DevCa::new(TRUST_DOMAIN).expect("development CA"),
        }
    }

    /// Writes a bundle for `leaf` under `<dir>/<name>/`.
    pub fn write(&self, name: &str, leaf: &IssuedCert) -> TlsFiles {
        self.ca
            .write_bundle(&self.dir.path().join(name), leaf)
            .expect("write bundle")
    }

    /// The bundle of mesh workload `name`.
    pub fn workload(&self, name: &str) -> TlsFiles {
        let leaf = self
            .ca
            .workload(NAMESPACE, name)
            .expect("workload certificate");
        self.write(name, &leaf)
    }

    /// The bundle of organisation system `system` of `ods`.
    pub fn org_system(&self, ods: &str, system: &str) -> TlsFiles {
        let leaf = self.ca.org_system(ods, system).expect("org certificate");
        self.write(&format!("org-{ods}-{system}"), &leaf)
    }

    /// Loaded TLS material for a bundle.
    pub fn tls(&self, files: &TlsFiles) -> MeshTls {
        MeshTls::load(files.clone(), TRUST_DOMAIN).expect("load TLS")
    }

    /// The configuration of workload `name` on ephemeral loopback ports, with fast reloads,
    /// health checks and shutdown for tests.
    pub fn mesh_config(&self, name: &'static str) -> MeshConfig {
        let files = self.workload(name);
        let defaults = ServiceDefaults {
            name,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut config = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", TEST_HASH_KEY)
            .load::<crate::config::NoSection>(&defaults)
            .expect("test configuration")
            .mesh;
        config.tls.ca_file = files.ca;
        config.tls.cert_file = files.cert;
        config.tls.key_file = files.key;
        config.tls.reload_interval = HumanDuration::from_millis(100);
        config.server.health_check_interval = HumanDuration::from_millis(100);
        config.server.shutdown_grace = HumanDuration::from_secs(5);
        config
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// The Postgres server tests use: `CPIS_TEST_DATABASE_URL`, by default the local one.
pub fn postgres_server_url() -> String {
    std::env::var("CPIS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A new, empty Postgres database (`cpis_test_<random>`) on the test server; its URL.
/// `scripts/test.sh` drops leftovers of earlier runs.
pub async fn postgres_database() -> String {
    use sqlx::Connection;
    let server = postgres_server_url();
    let name = format!("cpis_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("the test Postgres server is reachable (CPIS_TEST_DATABASE_URL)");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let _ = admin.close().await;
    match server.rfind('/') {
        Some(slash) if server[..slash].ends_with(|c: char| c != '/') => {
            format!("{}/{name}", &server[..slash])
        }
        _ => format!("{}/{name}", server.trim_end_matches('/')),
    }
}

/// Makes `db` refuse every outbox row for `destination` (a trigger on the `outbox` table,
/// either dialect), so that a test can make the statement or transaction that writes one
/// fail as a whole.
pub async fn refuse_outbox_destination(db: &crate::db::Database, destination: &str) {
    use crate::db::Database;
    assert!(
        destination
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "a plain destination name"
    );
    let done = match db {
        Database::Postgres(pool) => sqlx::raw_sql(&format!(
            "CREATE FUNCTION refuse_outbox_row() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'outbox row refused by the test'; END $$; \
             CREATE TRIGGER refuse_outbox_row BEFORE INSERT ON outbox FOR EACH ROW \
             WHEN (NEW.destination = '{destination}') EXECUTE FUNCTION refuse_outbox_row();"
        ))
        .execute(pool)
        .await
        .map(|_| ()),
        Database::Sqlite(pool) => sqlx::raw_sql(&format!(
            "CREATE TRIGGER refuse_outbox_row BEFORE INSERT ON outbox \
             WHEN NEW.destination = '{destination}' \
             BEGIN SELECT RAISE(ABORT, 'outbox row refused by the test'); END;"
        ))
        .execute(pool)
        .await
        .map(|_| ()),
    };
    done.expect("install the refusing trigger");
}

/// The URL of an SQLite database file `name` in `dir`.
pub fn sqlite_database(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite:{}", dir.join(format!("{name}.db")).display())
}

/// A span as an OTLP receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting resource.
    pub service_name: String,
    /// The span's name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root span.
    pub parent_span_id: String,
    /// String, integer and boolean attributes, as text.
    pub attributes: HashMap<String, String>,
}

/// An OTLP/gRPC trace receiver on a loopback port.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    /// Where exporters send (`http://<addr>`).
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[derive(Debug, Clone)]
struct Collector(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|r| {
                    r.attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .and_then(|v| text(v.value.as_ref()))
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .filter_map(|kv| {
                                let value =
                                    kv.value.as_ref().and_then(|v| text(v.value.as_ref()))?;
                                Some((kv.key.clone(), value))
                            })
                            .collect(),
                    });
                }
            }
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl OtlpReceiver {
    /// Starts a receiver on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector(spans.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Self { addr, spans }
    }

    /// The endpoint to put in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` for a span matching `predicate`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&ReceivedSpan) -> bool,
    ) -> Option<ReceivedSpan> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(span) = self.spans().into_iter().find(&predicate) {
                return Some(span);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
