//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata: one function reads the
//! parent from an incoming request, one writes the current span into an outgoing one.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote parent carried by a request's headers (an empty context when there is none).
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the context of `span` into outgoing headers.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The trace id of `span` as 32 hex digits, when it has a valid one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_cx = cx.span().span_context().clone();
    span_cx.is_valid().then(|| span_cx.trace_id().to_string())
}

/// The span id of `span` as 16 hex digits, when it has a valid context.
pub fn span_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_cx = cx.span().span_context().clone();
    span_cx.is_valid().then(|| span_cx.span_id().to_string())
}

/// Makes `span` a child of the producer's span named by a stored W3C `traceparent` (and
/// `tracestate`): work a consumer does for an event that travelled through an outbox stays
/// in the trace of the request that produced it. Without a valid `traceparent`, `span`
/// keeps its own parent. Call before `span` is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    let mut headers = HeaderMap::new();
    let Ok(parent) = HeaderValue::from_str(traceparent) else {
        return;
    };
    headers.insert("traceparent", parent);
    if let Some(state) = Some(tracestate)
        .filter(|s| !s.is_empty())
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert("tracestate", state);
    }
    let cx = extract(&headers);
    if cx.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is no trace.
        let _ = span.set_parent(cx);
    }
}
