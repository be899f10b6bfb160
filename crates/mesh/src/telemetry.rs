//! All telemetry set-up in one place: JSON logs carrying trace ids, and OpenTelemetry traces
//! exported over OTLP when the standard `OTEL_*` variables ask for it.
//!
//! A tracer provider is always installed, with or without an exporter, so that every call
//! gets a real W3C trace context that is logged and propagated even when nothing collects
//! spans. The returned [`TelemetryGuard`] flushes pending spans when the process stops.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetrySection};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("telemetry.log_filter (CPIS_TELEMETRY_LOG_FILTER): {0}")]
    Filter(String),
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed in this process.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialised,
}

/// Keeps the tracer provider alive; flushes and shuts it down on [`shutdown`](Self::shutdown)
/// or drop.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports what is pending now.
    pub fn flush(&self) {
        if let Some(Err(error)) = self.provider.as_ref().map(SdkTracerProvider::force_flush) {
            tracing::warn!(%error, "could not flush spans");
        }
    }

    /// Exports what is pending and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(Err(error)) = self.provider.take().map(|p| p.shutdown()) {
            tracing::warn!(%error, "tracer provider did not shut down cleanly");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the standard variables ask for an OTLP trace exporter: an endpoint is set and
/// `OTEL_TRACES_EXPORTER` is not `none`.
pub fn otlp_requested() -> bool {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return false;
    }
    var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanExport {
    /// As the standard `OTEL_*` variables say: OTLP/gRPC when an endpoint is set, else nowhere.
    FromEnvironment,
    /// OTLP/gRPC to this endpoint (`http://host:4317`), whatever the environment says.
    Otlp(String),
    /// Nowhere (trace contexts are still created and propagated).
    Nowhere,
}

/// Installs the global subscriber: logs per `section`, spans as the `OTEL_*` variables say.
/// Must run inside a Tokio runtime (the OTLP exporter's client lives on it).
/// `service_name` is the default of `OTEL_SERVICE_NAME`.
pub fn init(
    service_name: &str,
    section: &TelemetrySection,
) -> Result<TelemetryGuard, TelemetryError> {
    init_with(service_name, section, SpanExport::FromEnvironment)
}

/// Like [`init`], with the span destination given.
pub fn init_with(
    service_name: &str,
    section: &TelemetrySection,
    export: SpanExport,
) -> Result<TelemetryGuard, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;

    let service_name =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
    let resource = Resource::builder().with_service_name(service_name).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let exporter = match export {
        SpanExport::FromEnvironment if otlp_requested() => Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build(),
        ),
        SpanExport::Otlp(endpoint) => Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build(),
        ),
        SpanExport::FromEnvironment | SpanExport::Nowhere => None,
    };
    if let Some(exporter) = exporter {
        let exporter = exporter.map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("cpis-mesh");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_new(&section.log_filter)
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match section.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}
