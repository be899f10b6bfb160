//! Prometheus metrics: one registry per process, the per-RPC families of the mesh, and room
//! for each service's own.
//!
//! Labels never carry personal data: only service, method, gRPC code and similar.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the per-RPC families.
pub type Labels = Vec<(&'static str, String)>;

/// The metrics of a process; clones share one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    server: RpcMetrics,
    client: RpcMetrics,
    handshake_failures: Family<Labels, Counter>,
}

/// Request count, error count by code and latency of RPCs, on one side of the call.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    requests: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s: a cache hit to a bulk upload.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl RpcMetrics {
    fn register(registry: &mut Registry, side: &str) -> Self {
        let this = Self {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            format!("cpis_rpc_{side}_requests"),
            format!("gRPC calls {side} side, by service, method and status code"),
            this.requests.clone(),
        );
        registry.register(
            format!("cpis_rpc_{side}_errors"),
            format!("gRPC calls {side} side that ended with a status other than OK"),
            this.errors.clone(),
        );
        registry.register(
            format!("cpis_rpc_{side}_duration_seconds"),
            format!("gRPC call latency {side} side, until the final status"),
            this.duration.clone(),
        );
        this
    }

    /// Records one finished call.
    pub fn record(&self, service: &str, method: &str, code: tonic::Code, elapsed: Duration) {
        let base: Labels = vec![
            ("service", service.to_owned()),
            ("method", method.to_owned()),
        ];
        let mut with_code = base.clone();
        with_code.push(("code", code_name(code).to_owned()));
        self.requests.get_or_create(&with_code).inc();
        if code != tonic::Code::Ok {
            self.errors.get_or_create(&with_code).inc();
        }
        self.duration
            .get_or_create(&base)
            .observe(elapsed.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the mesh's RPC families.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let server = RpcMetrics::register(&mut registry, "server");
        let client = RpcMetrics::register(&mut registry, "client");
        let handshake_failures = Family::<Labels, Counter>::default();
        registry.register(
            "cpis_tls_handshake_failures",
            "mTLS handshakes the server refused or that timed out, by reason",
            handshake_failures.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            server,
            client,
            handshake_failures,
        }
    }

    /// Server-side RPC metrics.
    pub fn server(&self) -> &RpcMetrics {
        &self.server
    }

    /// Client-side RPC metrics.
    pub fn client(&self) -> &RpcMetrics {
        &self.client
    }

    /// Counts a refused or timed-out handshake; `reason` is one of a few fixed words.
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// The registry, for a service to register its own metrics.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry());
        text
    }
}

/// The canonical upper-case name of a gRPC status code, as used in labels.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_counted_with_its_code() {
        let metrics = Metrics::new();
        metrics.server().record(
            "cpis.audit.v1.AuditService",
            "Append",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        metrics.server().record(
            "cpis.audit.v1.AuditService",
            "Append",
            tonic::Code::Unavailable,
            Duration::from_millis(3),
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"cpis_rpc_server_requests_total{service="cpis.audit.v1.AuditService",method="Append",code="OK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cpis_rpc_server_errors_total{service="cpis.audit.v1.AuditService",method="Append",code="UNAVAILABLE"} 1"#),
            "{text}"
        );
        assert!(text.contains("cpis_rpc_server_duration_seconds_count{service=\"cpis.audit.v1.AuditService\",method=\"Append\"} 2"), "{text}");
    }
}
