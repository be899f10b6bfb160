//! The edge's bootstrap, built from a layout: the TLS listener organisation systems call,
//! its HTTP connection manager, and the clusters behind it.

mod clusters;
mod routes;

use std::net::IpAddr;

use crate::RenderError;
use crate::access_log::EDGE_ACCESS_LOG;
use crate::api::http::{
    AccessLog, CodecType, EnvoyGrpc, FileAccessLog, ForwardClientCertDetails, GrpcService,
    HTTP_CONNECTION_MANAGER, Http2ProtocolOptions, HttpConnectionManager, HttpFilter,
    OpenTelemetryConfig, PathWithEscapedSlashesAction, Router, SetCurrentClientCertDetails,
    SubstitutionFormatString, Tracing, TracingProvider,
};
use crate::api::tls::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SanType, StringMatcher,
    SubjectAltNameMatcher, TLS_TRANSPORT_SOCKET, TlsCertificate, TlsParameters, TlsVersion,
};
use crate::api::{
    Address, Admin, Any, Bootstrap, DownstreamConnectionsConfig, Duration, FilterChain, Listener,
    NetworkFilter, Node, OverloadManager, ResourceMonitor, StaticResources, TransportSocket,
};
use crate::layout::{EdgeLayout, Workload};
use crate::rpc::contract_rpcs;

use clusters::{OTLP_CLUSTER, collector_cluster, file, service_cluster};

/// The workload name of the edge: its SPIFFE service account, its service name in traces.
pub(crate) const EDGE_WORKLOAD: &str = "edge";

/// The edge's bootstrap for `layout`.
pub(crate) fn bootstrap(layout: &EdgeLayout) -> Result<Bootstrap, RenderError> {
    // The admin interface can drain, reconfigure and dump secrets: never off the host.
    let admin_ip: IpAddr = layout
        .admin
        .host
        .parse()
        .map_err(|_| RenderError::AdminNotLoopback(layout.admin.host.clone()))?;
    if !admin_ip.is_loopback() {
        return Err(RenderError::AdminNotLoopback(layout.admin.host.clone()));
    }
    let mut clusters = Workload::ALL
        .into_iter()
        .map(|w| service_cluster(layout, w))
        .collect::<Result<Vec<_>, _>>()?;
    clusters.extend(layout.otlp_collector.as_ref().map(collector_cluster));
    Ok(Bootstrap {
        node: Node {
            id: EDGE_WORKLOAD.to_owned(),
            cluster: format!("cpis-{EDGE_WORKLOAD}"),
        },
        admin: Admin {
            address: Address::socket(&layout.admin.host, layout.admin.port),
        },
        static_resources: StaticResources {
            listeners: vec![listener(layout)?],
            clusters,
        },
        overload_manager: OverloadManager {
            resource_monitors: vec![ResourceMonitor {
                name: "envoy.resource_monitors.global_downstream_max_connections",
                typed_config: Any::new(DownstreamConnectionsConfig {
                    max_active_downstream_connections: 10_000,
                }),
            }],
        },
    })
}

fn listener(layout: &EdgeLayout) -> Result<Listener, RenderError> {
    let edge = &layout.edge_certificate;
    let tls = DownstreamTlsContext {
        common_tls_context: CommonTlsContext {
            tls_params: TlsParameters {
                tls_minimum_protocol_version: TlsVersion::Tls12,
            },
            alpn_protocols: vec!["h2"],
            tls_certificates: vec![TlsCertificate {
                certificate_chain: file(&edge.cert_file)?,
                private_key: file(&edge.key_file)?,
            }],
            // Organisation systems prove who they are with a certificate from the
            // organisations' CA naming an organisation system of the trust domain; which
            // system may do what is the services' decision. On one machine a single CA
            // signs workloads too: the SAN check keeps their certificates out.
            validation_context: CertificateValidationContext {
                trusted_ca: file(&layout.client_ca_file)?,
                match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                    san_type: SanType::Uri,
                    matcher: StringMatcher::prefix(format!(
                        "spiffe://{}/org/",
                        layout.trust_domain
                    )),
                }],
            },
        },
        require_client_certificate: true,
    };
    Ok(Listener {
        name: "edge-grpc".to_owned(),
        address: Address::socket(&layout.listener.host, layout.listener.port),
        // Envoy's edge guidance: bound what one connection may make the edge buffer.
        per_connection_buffer_limit_bytes: 32 * 1024,
        filter_chains: vec![FilterChain {
            transport_socket: TransportSocket {
                name: TLS_TRANSPORT_SOCKET,
                typed_config: Any::new(tls),
            },
            filters: vec![NetworkFilter {
                name: HTTP_CONNECTION_MANAGER,
                typed_config: Any::new(connection_manager(layout)?),
            }],
        }],
    })
}

fn connection_manager(layout: &EdgeLayout) -> Result<HttpConnectionManager, RenderError> {
    let access_log_path = layout
        .access_log_path
        .to_str()
        .ok_or_else(|| RenderError::NonUtf8Path(layout.access_log_path.clone()))?;
    Ok(HttpConnectionManager {
        stat_prefix: "edge",
        // gRPC only: HTTP/2, negotiated by ALPN.
        codec_type: CodecType::Http2,
        http2_protocol_options: Http2ProtocolOptions::with_keepalive(Some(100)),
        // The edge faces the outside: the peer address is the client's, not a header's.
        use_remote_address: true,
        generate_request_id: true,
        // Routes match paths exactly: no alternative spellings of a path past them.
        normalize_path: true,
        merge_slashes: true,
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::RejectRequest,
        // Whatever a client sends as x-forwarded-client-cert is dropped; the services get
        // `By=<edge>;Hash=<cert hash>;URI=<client's SPIFFE ID>` from the verified
        // certificate, and believe it only from the edge (crates/mesh/src/authz.rs).
        forward_client_cert_details: ForwardClientCertDetails::SanitizeSet,
        set_current_client_cert_details: SetCurrentClientCertDetails { uri: true },
        request_headers_timeout: Duration::secs(10),
        stream_idle_timeout: Duration::secs(300),
        tracing: layout.otlp_collector.as_ref().map(|_| Tracing {
            // The OpenTelemetry tracer reads and writes W3C `traceparent`, from which the
            // services continue the trace.
            provider: TracingProvider {
                name: "envoy.tracers.opentelemetry",
                typed_config: Any::new(OpenTelemetryConfig {
                    grpc_service: GrpcService {
                        envoy_grpc: EnvoyGrpc {
                            cluster_name: OTLP_CLUSTER.to_owned(),
                        },
                        timeout: Duration::millis(500),
                    },
                    service_name: EDGE_WORKLOAD,
                }),
            },
            spawn_upstream_span: true,
        }),
        access_log: vec![AccessLog {
            name: "envoy.access_loggers.file",
            typed_config: Any::new(FileAccessLog {
                path: access_log_path.to_owned(),
                log_format: SubstitutionFormatString {
                    json_format: EDGE_ACCESS_LOG,
                },
            }),
        }],
        route_config: routes::route_config(&contract_rpcs()?),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router",
            typed_config: Any::new(Router {}),
        }],
    })
}
