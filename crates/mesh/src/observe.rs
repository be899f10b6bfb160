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

use crate::coalesce;
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
        // A server's answers go in pieces (see `ObservedBody`); a client's are read as they come.
        let in_pieces = self.side == Side::Server;
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
                            in_pieces,
                            rest: None,
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
    /// A response body that completes its call's span and metrics at the trailers. A
    /// server's answer of a few KiB is sent in pieces under 1 KiB, so that it leaves with
    /// its trailers in one write (see [`coalesce`]).
    struct ObservedBody {
        #[pin]
        inner: Body,
        completion: Option<Completion>,
        in_pieces: bool,
        // What is left of a message being sent in pieces.
        rest: Option<bytes_type::Bytes>,
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
        if let Some(rest) = this.rest {
            let piece = coalesce::next_piece(rest);
            if rest.is_empty() {
                *this.rest = None;
            }
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
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
        match frame {
            Some(Ok(frame))
                if *this.in_pieces
                    && frame
                        .data_ref()
                        .is_some_and(|data| coalesce::in_pieces(data.len())) =>
            {
                let Ok(mut data) = frame.into_data() else {
                    unreachable!("a data frame")
                };
                let piece = coalesce::next_piece(&mut data);
                *this.rest = Some(data);
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            frame => Poll::Ready(frame),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.rest.as_ref().map_or(0, |rest| rest.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

mod bytes_type {
    pub(super) use tonic::codegen::Bytes;
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::bytes_type::Bytes;
    use super::*;

    /// A body of given frames, ready at once.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// A service answering every call with a message of `len` bytes and OK trailers.
    #[derive(Clone)]
    struct Answers {
        len: usize,
    }

    impl Answers {
        fn message(&self) -> Vec<u8> {
            (0..self.len).map(|i| (i % 251) as u8).collect()
        }
    }

    impl Service<Request<()>> for Answers {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let frames = VecDeque::from([
                Frame::data(Bytes::from(self.message())),
                Frame::trailers(trailers),
            ]);
            std::future::ready(Ok(Response::new(Body::new(Frames(frames)))))
        }
    }

    /// The frames of an answer of `len` bytes and its trailers as `layer` passes them on:
    /// each data frame's length, then `None` for the trailers.
    async fn frames_through<L>(layer: L, len: usize) -> Vec<Option<usize>>
    where
        L: Layer<Answers>,
        L::Service: Service<Request<()>, Response = Response<Body>, Error = Infallible>,
    {
        let answers = Answers { len };
        let request = Request::builder()
            .uri("/cpis.test.v1.TestService/Get")
            .body(())
            .unwrap();
        let mut body = layer
            .layer(answers.clone())
            .call(request)
            .await
            .unwrap()
            .into_body();
        let mut seen = Vec::new();
        let mut data = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            match frame.unwrap().into_data() {
                Ok(chunk) => {
                    seen.push(Some(chunk.len()));
                    data.extend_from_slice(&chunk);
                }
                Err(frame) => {
                    assert!(frame.is_trailers());
                    seen.push(None);
                }
            }
        }
        assert!(body.is_end_stream());
        assert_eq!(data, answers.message(), "every byte, in order");
        seen
    }

    #[tokio::test]
    async fn a_servers_answer_of_a_few_kib_goes_in_pieces_h2_copies_into_one_write() {
        let server = || ServerObserveLayer::new(Metrics::new());
        assert_eq!(
            frames_through(server(), 2500).await,
            [Some(1023), Some(1023), Some(454), None]
        );
        assert_eq!(
            frames_through(server(), 900).await,
            [Some(900), None],
            "already small enough"
        );
        assert_eq!(
            frames_through(server(), 5000).await,
            [Some(5000), None],
            "large answers go whole"
        );
    }

    #[tokio::test]
    async fn a_clients_answer_is_read_as_it_came() {
        let client = ClientObserveLayer::new(Metrics::new());
        assert_eq!(frames_through(client, 2500).await, [Some(2500), None]);
    }
}
