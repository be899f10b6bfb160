//! One span and one set of metrics per RPC, on servers and on clients.
//!
//! The gRPC status of a call is known only at its end: in the response headers for a
//! trailers-only answer, otherwise in the trailers. The response body is therefore wrapped so
//! that the span and metrics are completed when the trailers pass (or when the body is dropped
//! early, which counts as CANCELLED).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{Metrics, RpcMetrics};
use crate::propagation;

/// Which end of a call a layer observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// Traces and measures every call a server receives: continues the caller's trace from
/// `traceparent`, names the span after the method and records the final status.
#[derive(Debug, Clone)]
pub struct ServerObserveLayer {
    metrics: Metrics,
}

impl ServerObserveLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

/// Traces and measures every call a client makes, and writes its span's context into the
/// request so the server continues the same trace.
#[derive(Debug, Clone)]
pub struct ClientObserveLayer {
    metrics: Metrics,
}

impl ClientObserveLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ServerObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.server().clone(),
            side: Side::Server,
        }
    }
}

impl<S> Layer<S> for ClientObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.client().clone(),
            side: Side::Client,
        }
    }
}

/// The service made by [`ServerObserveLayer`] and [`ClientObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: RpcMetrics,
    side: Side,
}

/// `/package.Service/Method` split into its two names.
fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let name = format!("{service}/{method}");
        let span = match self.side {
            Side::Server => tracing::info_span!(
                "grpc.server",
                otel.name = %name,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                peer = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            ),
            Side::Client => tracing::info_span!(
                "grpc.client",
                otel.name = %name,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            ),
        };
        match self.side {
            Side::Server => {
                // The parent must be set before the span is first entered.
                let _ = span.set_parent(propagation::extract(request.headers()));
            }
            Side::Client => propagation::inject(&span, request.headers_mut()),
        }
        // Logs inside the call carry these fields, so a log line leads to its trace.
        if let Some(trace_id) = propagation::trace_id(&span) {
            span.record("trace_id", trace_id);
        }
        if let Some(span_id) = propagation::span_id(&span) {
            span.record("span_id", span_id);
        }

        let completion = Completion {
            span: span.clone(),
            metrics: self.metrics.clone(),
            side: self.side,
            service,
            method,
            start: Instant::now(),
            done: false,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let mut completion = completion;
                let response = inner.call(request).await;
                match response {
                    Ok(response) => {
                        if let Some(code) = grpc_status(response.headers()) {
                            completion.finish(code);
                            return Ok(response);
                        }
                        let (parts, body) = response.into_parts();
                        let body = ObservedBody {
                            inner: body,
                            completion: Some(completion),
                        };
                        Ok(Response::from_parts(parts, Body::new(body)))
                    }
                    Err(error) => {
                        completion.finish(tonic::Code::Unavailable);
                        Err(error)
                    }
                }
            }
            .instrument(span),
        )
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// Completes a call's span and metrics exactly once.
struct Completion {
    span: tracing::Span,
    metrics: RpcMetrics,
    side: Side,
    service: String,
    method: String,
    start: Instant,
    done: bool,
}

impl Completion {
    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.metrics
            .record(&self.service, &self.method, code, self.start.elapsed());
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_error(self.side, code) {
            self.span.record("otel.status_code", "ERROR");
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // A body dropped before its trailers: the peer went away or the stream was abandoned.
        self.finish(tonic::Code::Cancelled);
    }
}

/// OpenTelemetry's rule for gRPC: on servers only codes that mean the server failed are
/// errors; on clients every code but OK is.
fn is_error(side: Side, code: tonic::Code) -> bool {
    use tonic::Code;
    match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    }
}

pin_project_lite::pin_project! {
    /// A response body that completes its call's span and metrics at the trailers.
    struct ObservedBody {
        #[pin]
        inner: Body,
        completion: Option<Completion>,
    }
}

impl HttpBody for ObservedBody {
    type Data = bytes_type::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(tonic::Code::Unknown);
                    if let Some(mut completion) = this.completion.take() {
                        completion.finish(code);
                    }
                }
            }
            Some(Err(status)) => {
                if let Some(mut completion) = this.completion.take() {
                    completion.finish(status.code());
                }
            }
            None => {
                if let Some(mut completion) = this.completion.take() {
                    // A body that ends without trailers carries no status: gRPC calls that
                    // unknown.
                    completion.finish(tonic::Code::Unknown);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

mod bytes_type {
    pub(super) use tonic::codegen::Bytes;
}
