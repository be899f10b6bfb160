//! `config.cluster.v3.Cluster` and what a cluster carries: endpoints, HTTP/2, health
//! checks, outlier detection.

use serde::Serialize;

use super::http::Http2ProtocolOptions;
use super::tls::UpstreamTlsContext;
use super::{Address, Any, Duration, TransportSocket, TypeUrl};

/// `config.cluster.v3.Cluster`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cluster {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) discovery: DiscoveryType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dns_lookup_family: Option<DnsLookupFamily>,
    pub(crate) connect_timeout: Duration,
    pub(crate) lb_policy: LbPolicy,
    pub(crate) load_assignment: ClusterLoadAssignment,
    pub(crate) typed_extension_protocol_options: ProtocolOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transport_socket: Option<TransportSocket<UpstreamTlsContext>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) health_checks: Vec<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) outlier_detection: Option<OutlierDetection>,
}

/// `Cluster.DiscoveryType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum DiscoveryType {
    /// Fixed addresses (an IP literal).
    Static,
    /// Every address a name resolves to, re-resolved (a Kubernetes Service).
    StrictDns,
}

/// `Cluster.DnsLookupFamily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum DnsLookupFamily {
    V4Preferred,
}

/// `Cluster.LbPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum LbPolicy {
    RoundRobin,
}

/// `config.endpoint.v3.ClusterLoadAssignment` with one endpoint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterLoadAssignment {
    pub(crate) cluster_name: String,
    pub(crate) endpoints: Vec<LocalityLbEndpoints>,
}

/// `config.endpoint.v3.LocalityLbEndpoints`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LocalityLbEndpoints {
    pub(crate) lb_endpoints: Vec<LbEndpoint>,
}

/// `config.endpoint.v3.LbEndpoint`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LbEndpoint {
    pub(crate) endpoint: Endpoint,
}

/// `config.endpoint.v3.Endpoint`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
}

impl ClusterLoadAssignment {
    pub(crate) fn single(cluster_name: &str, host: &str, port: u16) -> Self {
        Self {
            cluster_name: cluster_name.to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    endpoint: Endpoint {
                        address: Address::socket(host, port),
                    },
                }],
            }],
        }
    }
}

/// `Cluster.typed_extension_protocol_options`, keyed by extension name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProtocolOptions {
    #[serde(rename = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions")]
    pub(crate) http: Any<HttpProtocolOptions>,
}

impl ProtocolOptions {
    /// HTTP/2 to the upstream, whatever the downstream spoke: gRPC needs it.
    pub(crate) fn http2() -> Self {
        Self {
            http: Any::new(HttpProtocolOptions {
                explicit_http_config: ExplicitHttpConfig {
                    http2_protocol_options: Http2ProtocolOptions::with_keepalive(None),
                },
            }),
        }
    }
}

/// `extensions.upstreams.http.v3.HttpProtocolOptions`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpProtocolOptions {
    pub(crate) explicit_http_config: ExplicitHttpConfig,
}

impl TypeUrl for HttpProtocolOptions {
    const TYPE_URL: &'static str =
        "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
}

/// `HttpProtocolOptions.ExplicitHttpConfig`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExplicitHttpConfig {
    pub(crate) http2_protocol_options: Http2ProtocolOptions,
}

/// `config.core.v3.HealthCheck` (gRPC only). Envoy health-checks through the cluster's own
/// transport socket, so the check speaks the same mTLS as the traffic.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthCheck {
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) interval_jitter: Duration,
    pub(crate) unhealthy_threshold: u32,
    pub(crate) healthy_threshold: u32,
    pub(crate) no_traffic_interval: Duration,
    pub(crate) grpc_health_check: GrpcHealthCheck,
}

/// `config.core.v3.HealthCheck.GrpcHealthCheck`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GrpcHealthCheck {
    /// The gRPC service whose status is asked: SERVING only while its dependencies answer.
    pub(crate) service_name: String,
}

/// `config.cluster.v3.OutlierDetection`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutlierDetection {
    pub(crate) consecutive_5xx: u32,
    pub(crate) consecutive_gateway_failure: u32,
    pub(crate) enforcing_consecutive_gateway_failure: u32,
    pub(crate) interval: Duration,
    pub(crate) base_ejection_time: Duration,
    pub(crate) max_ejection_percent: u32,
}
