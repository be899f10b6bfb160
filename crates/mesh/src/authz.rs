//! Which peers may call which RPC: a per-method allow-list, deny by default.
//!
//! Three classes of peer exist (DESIGN.md "Security"): mesh services, named; the edge; and
//! organisation systems. When the peer is the edge, the caller is the organisation system
//! the edge verified and named in `x-forwarded-client-cert`; from any other peer that header
//! is removed unread, so it can never be used to impersonate an organisation.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::identity::{OrgSystemId, PeerIdentity, WorkloadId};
use crate::incoming::PeerInfo;

/// The header in which the edge passes on the client certificate it verified.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Who made a call, as far as TLS and the edge tell; found in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A workload of the mesh other than the edge.
    Service(WorkloadId),
    /// The edge itself, forwarding no client certificate.
    Edge(WorkloadId),
    /// An organisation's system: directly (one machine) or through the edge (a cluster).
    OrgSystem {
        /// The system and its organisation.
        system: OrgSystemId,
        /// Whether the edge vouched for it.
        via_edge: bool,
    },
}

impl Caller {
    /// A short, non-personal description for logs and spans.
    pub fn describe(&self) -> String {
        match self {
            Self::Service(w) => format!("service:{}", w.name),
            Self::Edge(_) => "edge".to_owned(),
            Self::OrgSystem { system, .. } => {
                format!("org:{}/{}", system.organisation.as_str(), system.system)
            }
        }
    }

    /// The organisation system, if the caller is one.
    pub fn org_system(&self) -> Option<&OrgSystemId> {
        match self {
            Self::OrgSystem { system, .. } => Some(system),
            _ => None,
        }
    }
}

/// A class of peer named in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerClass {
    /// The mesh service with this workload name (e.g. `attendance`).
    Service(String),
    /// Any mesh service.
    AnyService,
    /// The edge itself, without a forwarded client.
    Edge,
    /// Any organisation system, directly or through the edge.
    OrgSystem,
}

impl PeerClass {
    /// The mesh service with this workload name.
    pub fn service(name: &str) -> Self {
        Self::Service(name.to_owned())
    }

    fn admits(&self, caller: &Caller) -> bool {
        match (self, caller) {
            (Self::Service(name), Caller::Service(w)) => &w.name == name,
            (Self::AnyService, Caller::Service(_))
            | (Self::Edge, Caller::Edge(_))
            | (Self::OrgSystem, Caller::OrgSystem { .. }) => true,
            _ => false,
        }
    }
}

/// gRPC services every peer with a valid certificate may call.
const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The allow-list of one server.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    trust_domain: String,
    namespace: String,
    edge_workload: String,
    methods: HashMap<String, Vec<PeerClass>>,
    services: HashMap<String, Vec<PeerClass>>,
}

impl AccessPolicy {
    /// An empty policy (everything but health and reflection denied) for a mesh in
    /// `trust_domain`/`namespace` whose edge runs as `edge_workload`.
    pub fn new(trust_domain: &str, namespace: &str, edge_workload: &str) -> Self {
        Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            edge_workload: edge_workload.to_owned(),
            methods: HashMap::new(),
            services: HashMap::new(),
        }
    }

    /// Allows `peers` to call one method, named `package.Service/Method`.
    pub fn allow_method(
        mut self,
        method: &str,
        peers: impl IntoIterator<Item = PeerClass>,
    ) -> Self {
        self.methods
            .entry(format!("/{}", method.trim_start_matches('/')))
            .or_default()
            .extend(peers);
        self
    }

    /// Allows `peers` to call every method of a gRPC service, named `package.Service`,
    /// except methods with a rule of their own.
    pub fn allow_service(
        mut self,
        service: &str,
        peers: impl IntoIterator<Item = PeerClass>,
    ) -> Self {
        self.services
            .entry(service.to_owned())
            .or_default()
            .extend(peers);
        self
    }

    /// Who the caller is, from the connection's identity and, for the edge, the header.
    pub fn resolve_caller(
        &self,
        peer: &PeerIdentity,
        forwarded: Option<&str>,
    ) -> Result<Caller, Status> {
        if peer.trust_domain() != self.trust_domain {
            return Err(Status::permission_denied(
                "peer is outside the trust domain",
            ));
        }
        match peer {
            PeerIdentity::Workload(w) if w.namespace != self.namespace => Err(
                Status::permission_denied("peer workload is outside the mesh's namespace"),
            ),
            PeerIdentity::Workload(w) if w.name == self.edge_workload => match forwarded {
                None => Ok(Caller::Edge(w.clone())),
                Some(header) => match forwarded_identity(header) {
                    Some(PeerIdentity::OrgSystem(system))
                        if system.trust_domain == self.trust_domain =>
                    {
                        Ok(Caller::OrgSystem {
                            system,
                            via_edge: true,
                        })
                    }
                    _ => Err(Status::permission_denied(
                        "the edge forwarded a client certificate that names no organisation system",
                    )),
                },
            },
            PeerIdentity::Workload(w) => Ok(Caller::Service(w.clone())),
            PeerIdentity::OrgSystem(system) => Ok(Caller::OrgSystem {
                system: system.clone(),
                via_edge: false,
            }),
        }
    }

    /// Whether `caller` may call the method at `path` (`/package.Service/Method`).
    pub fn permits(&self, path: &str, caller: &Caller) -> bool {
        let service = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        if OPEN_SERVICES.contains(&service) {
            return true;
        }
        let rule = self
            .methods
            .get(path)
            .or_else(|| self.services.get(service));
        rule.is_some_and(|peers| peers.iter().any(|p| p.admits(caller)))
    }
}

/// The URI of the single element of an `x-forwarded-client-cert` header, as Envoy writes it
/// with `SANITIZE_SET`: `By=...;Hash=...;URI=spiffe://...`. Several elements (a chain of
/// proxies) are refused: the edge is the only proxy and replaces the header.
fn forwarded_identity(header: &str) -> Option<PeerIdentity> {
    let elements = split_outside_quotes(header, ',');
    let [element] = elements.as_slice() else {
        return None;
    };
    let mut uri = None;
    for pair in split_outside_quotes(element, ';') {
        let (key, value) = pair.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("URI") {
            if uri.is_some() {
                return None;
            }
            uri = Some(value.trim().trim_matches('"').to_owned());
        }
    }
    uri?.parse().ok()
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Applies an [`AccessPolicy`] to every request and puts the [`Caller`] in its extensions.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: Arc<AccessPolicy>,
}

impl AuthorizeLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: AccessPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
}

impl<S> Service<Request<Body>> for Authorize<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let forwarded = request
            .headers_mut()
            .remove(XFCC_HEADER)
            .and_then(|v| v.to_str().ok().map(str::to_owned));
        let decision = match peer {
            None => Err(Status::unauthenticated("no client certificate")),
            Some(peer) => {
                // The header counts only from the edge; resolve_caller ignores it otherwise.
                let is_edge = matches!(&peer.identity, PeerIdentity::Workload(w) if w.name == self.policy.edge_workload);
                let forwarded = if is_edge { forwarded.as_deref() } else { None };
                self.policy
                    .resolve_caller(&peer.identity, forwarded)
                    .and_then(|caller| {
                        if self.policy.permits(request.uri().path(), &caller) {
                            Ok(caller)
                        } else {
                            Err(Status::permission_denied(format!(
                                "{} may not call {}",
                                caller.describe(),
                                request.uri().path()
                            )))
                        }
                    })
            }
        };
        match decision {
            Ok(caller) => {
                tracing::Span::current().record("peer", caller.describe());
                request.extensions_mut().insert(caller);
                // Take the service that was driven to readiness; leave a fresh clone behind.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => {
                tracing::info!(
                    path = request.uri().path(),
                    reason = status.message(),
                    "call refused"
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::new("cpis.local", "cpis", "edge")
            .allow_method(
                "cpis.flags.v1.FlagRegistryService/GetFlags",
                [PeerClass::service("attendance")],
            )
            .allow_service("cpis.flags.v1.FlagRegistryService", [PeerClass::OrgSystem])
    }

    fn workload(name: &str) -> PeerIdentity {
        PeerIdentity::Workload(WorkloadId::new("cpis.local", "cpis", name))
    }

    #[test]
    fn method_rules_win_over_service_rules() {
        let p = policy();
        let attendance = p.resolve_caller(&workload("attendance"), None).unwrap();
        let org: PeerIdentity = "spiffe://cpis.local/org/RJ1/system/ehr".parse().unwrap();
        let org = p.resolve_caller(&org, None).unwrap();
        let get = "/cpis.flags.v1.FlagRegistryService/GetFlags";
        let upsert = "/cpis.flags.v1.FlagRegistryService/UpsertFlag";
        assert!(p.permits(get, &attendance));
        assert!(!p.permits(get, &org));
        assert!(p.permits(upsert, &org));
        assert!(!p.permits(upsert, &attendance));
        assert!(!p.permits("/cpis.audit.v1.AuditService/Append", &attendance));
        assert!(p.permits("/grpc.health.v1.Health/Check", &org));
    }

    #[test]
    fn the_edge_speaks_for_the_client_it_verified() {
        let p = policy();
        let header = "By=spiffe://cpis.local/ns/cpis/sa/edge;Hash=abc;Subject=\"CN=x,O=y\";URI=spiffe://cpis.local/org/RJ1/system/ehr";
        let caller = p.resolve_caller(&workload("edge"), Some(header)).unwrap();
        assert_eq!(caller.describe(), "org:RJ1/ehr");
        assert!(matches!(caller, Caller::OrgSystem { via_edge: true, .. }));
        assert_eq!(
            p.resolve_caller(&workload("edge"), None)
                .unwrap()
                .describe(),
            "edge"
        );
    }

    #[test]
    fn a_forwarded_header_that_names_no_org_system_is_refused() {
        let p = policy();
        for header in [
            "URI=spiffe://cpis.local/ns/cpis/sa/audit",
            "URI=spiffe://other.domain/org/RJ1/system/ehr",
            "URI=spiffe://cpis.local/org/RJ1/system/a,URI=spiffe://cpis.local/org/RJ2/system/b",
            "Hash=abc",
        ] {
            assert!(
                p.resolve_caller(&workload("edge"), Some(header)).is_err(),
                "{header}"
            );
        }
    }

    #[test]
    fn workloads_of_other_namespaces_are_refused() {
        let p = policy();
        let stranger = PeerIdentity::Workload(WorkloadId::new("cpis.local", "other", "attendance"));
        assert!(p.resolve_caller(&stranger, None).is_err());
    }
}
