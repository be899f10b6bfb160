//! The HTTP connection manager and what hangs off it: routes, tracing, the access log.

use serde::Serialize;

use super::{Any, Duration, TypeUrl};

/// The network filter name of the HTTP connection manager.
pub(crate) const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// `extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpConnectionManager {
    pub(crate) stat_prefix: &'static str,
    pub(crate) codec_type: CodecType,
    pub(crate) http2_protocol_options: Http2ProtocolOptions,
    pub(crate) use_remote_address: bool,
    pub(crate) generate_request_id: bool,
    pub(crate) normalize_path: bool,
    pub(crate) merge_slashes: bool,
    pub(crate) path_with_escaped_slashes_action: PathWithEscapedSlashesAction,
    pub(crate) forward_client_cert_details: ForwardClientCertDetails,
    pub(crate) set_current_client_cert_details: SetCurrentClientCertDetails,
    pub(crate) request_headers_timeout: Duration,
    pub(crate) stream_idle_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tracing: Option<Tracing>,
    pub(crate) access_log: Vec<AccessLog>,
    pub(crate) route_config: RouteConfiguration,
    pub(crate) http_filters: Vec<HttpFilter>,
}

impl TypeUrl for HttpConnectionManager {
    const TYPE_URL: &'static str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
}

/// `HttpConnectionManager.CodecType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum CodecType {
    Http2,
}

/// `config.core.v3.Http2ProtocolOptions`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Http2ProtocolOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrent_streams: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connection_keepalive: Option<KeepaliveSettings>,
}

impl Http2ProtocolOptions {
    /// HTTP/2 PINGs on a connection idle this long, closed when one goes unanswered: a
    /// live Subscribe stream over a dead connection is noticed in seconds, not when TCP
    /// gives up.
    pub(crate) fn with_keepalive(max_concurrent_streams: Option<u32>) -> Self {
        Self {
            max_concurrent_streams,
            connection_keepalive: Some(KeepaliveSettings {
                interval: Duration::secs(30),
                timeout: Duration::secs(10),
            }),
        }
    }
}

/// `config.core.v3.KeepaliveSettings`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeepaliveSettings {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// `HttpConnectionManager.PathWithEscapedSlashesAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum PathWithEscapedSlashesAction {
    RejectRequest,
}

/// `HttpConnectionManager.ForwardClientCertDetails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ForwardClientCertDetails {
    /// Drop whatever the client sent; set the header from the verified certificate.
    SanitizeSet,
}

/// `HttpConnectionManager.SetCurrentClientCertDetails`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SetCurrentClientCertDetails {
    pub(crate) uri: bool,
}

/// `HttpConnectionManager.Tracing`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tracing {
    pub(crate) provider: TracingProvider,
    pub(crate) spawn_upstream_span: bool,
}

/// `config.trace.v3.Tracing.Http`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TracingProvider {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<OpenTelemetryConfig>,
}

/// `config.trace.v3.OpenTelemetryConfig`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OpenTelemetryConfig {
    pub(crate) grpc_service: GrpcService,
    pub(crate) service_name: &'static str,
}

impl TypeUrl for OpenTelemetryConfig {
    const TYPE_URL: &'static str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
}

/// `config.core.v3.GrpcService` (Envoy's own gRPC client).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GrpcService {
    pub(crate) envoy_grpc: EnvoyGrpc,
    pub(crate) timeout: Duration,
}

/// `config.core.v3.GrpcService.EnvoyGrpc`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EnvoyGrpc {
    pub(crate) cluster_name: String,
}

/// `config.accesslog.v3.AccessLog`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AccessLog {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<FileAccessLog>,
}

/// `extensions.access_loggers.file.v3.FileAccessLog`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileAccessLog {
    pub(crate) path: String,
    pub(crate) log_format: SubstitutionFormatString,
}

impl TypeUrl for FileAccessLog {
    const TYPE_URL: &'static str =
        "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
}

/// `config.core.v3.SubstitutionFormatString` (JSON lines only).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubstitutionFormatString {
    pub(crate) json_format: crate::access_log::AccessLogRecord,
}

/// `config.route.v3.RouteConfiguration`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteConfiguration {
    pub(crate) name: &'static str,
    pub(crate) virtual_hosts: Vec<VirtualHost>,
}

/// `config.route.v3.VirtualHost`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VirtualHost {
    pub(crate) name: &'static str,
    pub(crate) domains: Vec<&'static str>,
    pub(crate) routes: Vec<Route>,
}

/// `config.route.v3.Route`: to a cluster or answered by the edge itself.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Route {
    pub(crate) name: String,
    #[serde(rename = "match")]
    pub(crate) matcher: RouteMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<RouteAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) direct_response: Option<DirectResponse>,
}

/// `config.route.v3.RouteMatch`: an exact path (one RPC) or a prefix (a gRPC service).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prefix: Option<String>,
}

/// `config.route.v3.RouteAction`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteAction {
    pub(crate) cluster: String,
    pub(crate) timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_stream_duration: Option<MaxStreamDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_policy: Option<RetryPolicy>,
}

/// `config.route.v3.RouteAction.MaxStreamDuration`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MaxStreamDuration {
    /// The cap on a client's `grpc-timeout`.
    pub(crate) grpc_timeout_header_max: Duration,
}

/// `config.route.v3.RetryPolicy`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RetryPolicy {
    pub(crate) retry_on: RetryOn,
    pub(crate) num_retries: u32,
    pub(crate) per_try_timeout: Duration,
    pub(crate) retry_host_predicate: Vec<RetryHostPredicate>,
    pub(crate) host_selection_retry_max_attempts: u32,
}

/// The conditions of `RetryPolicy.retry_on`, which Envoy reads as one comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryOn(pub(crate) Vec<RetryCondition>);

impl Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = self.0.iter().map(|c| c.as_str()).collect();
        serializer.serialize_str(&names.join(","))
    }
}

/// One retry condition (`x-envoy-retry-on` and `x-envoy-retry-grpc-on` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryCondition {
    /// gRPC status UNAVAILABLE in the response headers (no answer was produced).
    Unavailable,
    /// The upstream connection failed.
    ConnectFailure,
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM: never processed).
    RefusedStream,
    /// The upstream reset before sending response headers.
    Reset,
}

impl RetryCondition {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::ConnectFailure => "connect-failure",
            Self::RefusedStream => "refused-stream",
            Self::Reset => "reset",
        }
    }
}

/// `config.route.v3.RetryPolicy.RetryHostPredicate`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RetryHostPredicate {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<PreviousHostsPredicate>,
}

/// `extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`: retry elsewhere.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PreviousHostsPredicate {}

impl TypeUrl for PreviousHostsPredicate {
    const TYPE_URL: &'static str =
        "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
}

/// `config.route.v3.DirectResponseAction`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DirectResponse {
    pub(crate) status: u16,
}

/// `extensions.filters.network.http_connection_manager.v3.HttpFilter` (the router only).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpFilter {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<Router>,
}

/// `extensions.filters.http.router.v3.Router`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Router {}

impl TypeUrl for Router {
    const TYPE_URL: &'static str =
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
}
