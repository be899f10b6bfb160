//! Where the edge and its upstreams are: one machine (`cpis dev`) or a Kubernetes namespace.
//! Every field is public so that a test or an operator can move any of it.

use std::path::{Path, PathBuf};

/// A host (IP literal or DNS name) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP literal (a `STATIC` cluster) or a DNS name (a `STRICT_DNS` cluster).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
        }
    }
}

/// The five services behind the edge, by workload name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// `identity`: directory, tokens, person register.
    Identity,
    /// `flag-registry`: child protection flags and uploads.
    FlagRegistry,
    /// `attendance`: the check of a child.
    Attendance,
    /// `notification`: inboxes, live streams, webhooks.
    Notification,
    /// `audit`: the tamper-evident log.
    Audit,
}

impl Workload {
    /// Every service.
    pub const ALL: [Self; 5] = [
        Self::Identity,
        Self::FlagRegistry,
        Self::Attendance,
        Self::Notification,
        Self::Audit,
    ];

    /// The workload name: its SPIFFE service account, its cluster name at the edge.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::FlagRegistry => "flag-registry",
            Self::Attendance => "attendance",
            Self::Notification => "notification",
            Self::Audit => "audit",
        }
    }

    /// The fully-qualified gRPC service it serves (`cpis.identity.v1.IdentityService`).
    pub fn service_name(self) -> &'static str {
        use cpis_proto::{attendance, audit, flags, identity, notification};
        match self {
            Self::Identity => identity::identity_service_server::SERVICE_NAME,
            Self::FlagRegistry => flags::flag_registry_service_server::SERVICE_NAME,
            Self::Attendance => attendance::attendance_service_server::SERVICE_NAME,
            Self::Notification => notification::notification_service_server::SERVICE_NAME,
            Self::Audit => audit::audit_service_server::SERVICE_NAME,
        }
    }

    /// Its mTLS service port (docs/architecture.md).
    pub fn port(self) -> u16 {
        match self {
            Self::Identity => 50051,
            Self::FlagRegistry => 50052,
            Self::Attendance => 50053,
            Self::Notification => 50054,
            Self::Audit => 50055,
        }
    }

    /// The workload serving a fully-qualified gRPC service, if any does.
    pub fn serving(service_name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|w| w.service_name() == service_name)
    }
}

/// Where each service listens, one field per [`Workload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    /// `identity`.
    pub identity: Endpoint,
    /// `flag-registry`.
    pub flag_registry: Endpoint,
    /// `attendance`.
    pub attendance: Endpoint,
    /// `notification`.
    pub notification: Endpoint,
    /// `audit`.
    pub audit: Endpoint,
}

impl Upstreams {
    /// Each service at the endpoint `at` gives it.
    pub fn from_fn(mut at: impl FnMut(Workload) -> Endpoint) -> Self {
        Self {
            identity: at(Workload::Identity),
            flag_registry: at(Workload::FlagRegistry),
            attendance: at(Workload::Attendance),
            notification: at(Workload::Notification),
            audit: at(Workload::Audit),
        }
    }

    /// Where `workload` listens.
    pub fn get(&self, workload: Workload) -> &Endpoint {
        match workload {
            Workload::Identity => &self.identity,
            Workload::FlagRegistry => &self.flag_registry,
            Workload::Attendance => &self.attendance,
            Workload::Notification => &self.notification,
            Workload::Audit => &self.audit,
        }
    }

    /// Where `workload` listens, to change it.
    pub fn get_mut(&mut self, workload: Workload) -> &mut Endpoint {
        match workload {
            Workload::Identity => &mut self.identity,
            Workload::FlagRegistry => &mut self.flag_registry,
            Workload::Attendance => &mut self.attendance,
            Workload::Notification => &mut self.notification,
            Workload::Audit => &mut self.audit,
        }
    }
}

/// The edge's own workload certificate (`spiffe://<td>/ns/<namespace>/sa/edge`): its server
/// certificate towards organisation systems and its client certificate towards services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCertificate {
    /// The certificate chain (PEM), `tls.crt`.
    pub cert_file: PathBuf,
    /// Its private key (PEM), `tls.key`.
    pub key_file: PathBuf,
    /// The mesh CA (PEM), `ca.crt`: what the services' certificates must chain to.
    pub ca_file: PathBuf,
}

impl EdgeCertificate {
    /// `tls.crt`, `tls.key` and `ca.crt` in `dir` (the layout of a Kubernetes TLS secret and
    /// of `cpis pki`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            ca_file: dir.join("ca.crt"),
        }
    }
}

/// Everything the edge's configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLayout {
    /// Where organisation systems connect (TLS, client certificate required).
    pub listener: Endpoint,
    /// Envoy's admin interface; rendering refuses anything but a loopback address.
    pub admin: Endpoint,
    /// Where each service listens.
    pub upstreams: Upstreams,
    /// The SPIFFE trust domain (`cpis.local`).
    pub trust_domain: String,
    /// The namespace of the workloads' SPIFFE IDs (`cpis`), and of their Kubernetes
    /// Services.
    pub namespace: String,
    /// The edge's workload certificate, key and mesh CA.
    pub edge_certificate: EdgeCertificate,
    /// The organisations' CA bundle (PEM) that client certificates must chain to.
    pub client_ca_file: PathBuf,
    /// The OpenTelemetry collector (OTLP/gRPC, plaintext); no tracing when `None`.
    pub otlp_collector: Option<Endpoint>,
    /// Where the access log goes (JSON lines).
    pub access_log_path: PathBuf,
}

/// The default access log: standard output, collected with the container's logs.
pub const DEFAULT_ACCESS_LOG_PATH: &str = "/dev/stdout";

impl EdgeLayout {
    /// One machine, as `cpis dev` runs it: every service on `127.0.0.1:5005x`, the edge on
    /// `127.0.0.1:8443`, the development PKI of `cpis pki` under `pki_dir` (its one CA
    /// signs workloads and organisation systems alike), a collector on `127.0.0.1:4317`.
    pub fn local(pki_dir: &Path) -> Self {
        let edge_dir = pki_dir.join("edge");
        Self {
            listener: Endpoint::new("127.0.0.1", 8443),
            admin: Endpoint::new("127.0.0.1", 9901),
            upstreams: Upstreams::from_fn(|w| Endpoint::new("127.0.0.1", w.port())),
            trust_domain: "cpis.local".to_owned(),
            namespace: "cpis".to_owned(),
            client_ca_file: edge_dir.join("ca.crt"),
            edge_certificate: EdgeCertificate::in_dir(&edge_dir),
            otlp_collector: Some(Endpoint::new("127.0.0.1", 4317)),
            access_log_path: PathBuf::from(DEFAULT_ACCESS_LOG_PATH),
        }
    }

    /// A Kubernetes namespace: services reached by their Service DNS names
    /// (`cpis-<workload>.<namespace>.svc.cluster.local`), the edge on `0.0.0.0:8443`, its
    /// certificate mounted at `/etc/cpis/tls`, the organisations' CA at
    /// `/etc/cpis/client-ca/ca.crt`, the collector in the `observability` namespace.
    pub fn kubernetes(namespace: &str, trust_domain: &str) -> Self {
        Self {
            listener: Endpoint::new("0.0.0.0", 8443),
            admin: Endpoint::new("127.0.0.1", 9901),
            upstreams: Upstreams::from_fn(|w| {
                Endpoint::new(
                    &format!("cpis-{}.{namespace}.svc.cluster.local", w.name()),
                    w.port(),
                )
            }),
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            edge_certificate: EdgeCertificate::in_dir(Path::new("/etc/cpis/tls")),
            client_ca_file: PathBuf::from("/etc/cpis/client-ca/ca.crt"),
            otlp_collector: Some(Endpoint::new(
                "otel-collector.observability.svc.cluster.local",
                4317,
            )),
            access_log_path: PathBuf::from(DEFAULT_ACCESS_LOG_PATH),
        }
    }

    /// The SPIFFE ID the certificate of `workload` carries.
    pub fn spiffe_id(&self, workload: &str) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{workload}",
            self.trust_domain, self.namespace
        )
    }
}
