//! One cluster per service (mTLS as the edge, the service's SPIFFE ID checked, gRPC health
//! checks, outlier detection) and one for the OpenTelemetry collector.

use std::net::IpAddr;

use crate::RenderError;
use crate::api::cluster::{
    Cluster, ClusterLoadAssignment, DiscoveryType, DnsLookupFamily, GrpcHealthCheck, HealthCheck,
    LbPolicy, OutlierDetection, ProtocolOptions,
};
use crate::api::tls::{
    CertificateValidationContext, CommonTlsContext, SanType, StringMatcher, SubjectAltNameMatcher,
    TLS_TRANSPORT_SOCKET, TlsCertificate, TlsParameters, TlsVersion, UpstreamTlsContext,
};
use crate::api::{Any, DataSource, Duration, TransportSocket};
use crate::layout::{EdgeLayout, Endpoint, Workload};

/// The collector's cluster name.
pub(crate) const OTLP_CLUSTER: &str = "otel-collector";

const CONNECT_TIMEOUT: Duration = Duration::secs(2);

/// The cluster of one service.
pub(crate) fn service_cluster(
    layout: &EdgeLayout,
    workload: Workload,
) -> Result<Cluster, RenderError> {
    let upstream = layout.upstreams.get(workload);
    let edge = &layout.edge_certificate;
    let tls = UpstreamTlsContext {
        common_tls_context: CommonTlsContext {
            tls_params: TlsParameters {
                tls_minimum_protocol_version: TlsVersion::Tls12,
            },
            alpn_protocols: vec!["h2"],
            // The edge's own certificate: services admit it as `sa/edge`.
            tls_certificates: vec![TlsCertificate {
                certificate_chain: file(&edge.cert_file)?,
                private_key: file(&edge.key_file)?,
            }],
            // The service's certificate must chain to the mesh CA and carry exactly the
            // service's SPIFFE ID; its DNS names are not what identifies it.
            validation_context: CertificateValidationContext {
                trusted_ca: file(&edge.ca_file)?,
                match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                    san_type: SanType::Uri,
                    matcher: StringMatcher::exact(layout.spiffe_id(workload.name())),
                }],
            },
        },
        // SNI is a DNS name or nothing (RFC 6066 forbids IP literals).
        sni: is_dns_name(upstream).then(|| upstream.host.clone()),
    };
    Ok(Cluster {
        transport_socket: Some(TransportSocket {
            name: TLS_TRANSPORT_SOCKET,
            typed_config: Any::new(tls),
        }),
        health_checks: vec![HealthCheck {
            timeout: Duration::secs(1),
            interval: Duration::secs(5),
            interval_jitter: Duration::secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
            // Keep checking an idle edge often: the first call after a quiet night should
            // not meet a dead host.
            no_traffic_interval: Duration::secs(5),
            grpc_health_check: GrpcHealthCheck {
                service_name: workload.service_name().to_owned(),
            },
        }],
        // Hosts that keep failing are set aside for a while; with one address (a
        // ClusterIP Service) Envoy ejects nothing past max_ejection_percent, as it should.
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 3,
            enforcing_consecutive_gateway_failure: 100,
            interval: Duration::secs(10),
            base_ejection_time: Duration::secs(30),
            max_ejection_percent: 50,
        }),
        ..plain_cluster(workload.name(), upstream)
    })
}

/// The collector's cluster: OTLP over plaintext gRPC, as collectors serve it inside a
/// cluster. No health check: collectors do not serve `grpc.health.v1` on the OTLP port,
/// and a span lost while the collector restarts costs nothing.
pub(crate) fn collector_cluster(collector: &Endpoint) -> Cluster {
    plain_cluster(OTLP_CLUSTER, collector)
}

fn plain_cluster(name: &str, upstream: &Endpoint) -> Cluster {
    let dns = is_dns_name(upstream);
    Cluster {
        name: name.to_owned(),
        discovery: if dns {
            DiscoveryType::StrictDns
        } else {
            DiscoveryType::Static
        },
        dns_lookup_family: dns.then_some(DnsLookupFamily::V4Preferred),
        connect_timeout: CONNECT_TIMEOUT,
        lb_policy: LbPolicy::RoundRobin,
        load_assignment: ClusterLoadAssignment::single(name, &upstream.host, upstream.port),
        typed_extension_protocol_options: ProtocolOptions::http2(),
        transport_socket: None,
        health_checks: Vec::new(),
        outlier_detection: None,
    }
}

fn is_dns_name(endpoint: &Endpoint) -> bool {
    endpoint.host.parse::<IpAddr>().is_err()
}

/// A file named in the configuration; Envoy reads paths as UTF-8.
pub(crate) fn file(path: &std::path::Path) -> Result<DataSource, RenderError> {
    let filename = path
        .to_str()
        .ok_or_else(|| RenderError::NonUtf8Path(path.to_owned()))?;
    Ok(DataSource {
        filename: filename.to_owned(),
    })
}
