//! Deadlines: every call has one. A server applies the caller's `grpc-timeout`, capped, or its
//! own maximum when the caller sent none; a client sends its default when the call has none.

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::header::HeaderValue;
use http::{HeaderMap, Request, Response};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

const GRPC_TIMEOUT: &str = "grpc-timeout";
/// How much earlier than the deadline on the wire the mesh's own timer fires (at most a
/// twentieth of the deadline).
const EARLY: Duration = Duration::from_millis(5);

/// When the current call must be answered by; found in a server request's extensions, so a
/// handler can pass what is left of it to the calls it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value, in milliseconds (rounded up) or, when that
/// would need more than 8 digits, in seconds.
pub fn format_grpc_timeout(duration: Duration) -> String {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", duration.as_secs().min(99_999_999))
    }
}

fn requested(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// Server side: enforces `min(grpc-timeout, max)` on each call, answering DEADLINE_EXCEEDED.
#[derive(Debug, Clone, Copy)]
pub struct ServerDeadlineLayer {
    max: Duration,
}

impl ServerDeadlineLayer {
    /// Caps every call at `max`; calls without a deadline get `max`.
    pub fn new(max: Duration) -> Self {
        Self { max }
    }
}

/// Client side: gives each call without a deadline the default one, and enforces it.
#[derive(Debug, Clone, Copy)]
pub struct ClientDeadlineLayer {
    default: Duration,
}

impl ClientDeadlineLayer {
    /// Calls without a deadline get `default`.
    pub fn new(default: Duration) -> Self {
        Self { default }
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = EnforceDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnforceDeadline {
            inner,
            limit: self.max,
            client: false,
        }
    }
}

impl<S> Layer<S> for ClientDeadlineLayer {
    type Service = EnforceDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnforceDeadline {
            inner,
            limit: self.default,
            client: true,
        }
    }
}

/// The service made by the deadline layers.
#[derive(Debug, Clone)]
pub struct EnforceDeadline<S> {
    inner: S,
    limit: Duration,
    client: bool,
}

impl<S> Service<Request<Body>> for EnforceDeadline<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let asked = requested(request.headers());
        // A client keeps the deadline its caller set; a server caps it.
        let timeout = match (self.client, asked) {
            (true, Some(asked)) => asked,
            (false, Some(asked)) => asked.min(self.limit),
            (_, None) => self.limit,
        };
        if let Ok(value) = HeaderValue::from_str(&format_grpc_timeout(timeout)) {
            request.headers_mut().insert(GRPC_TIMEOUT, value);
        }
        // tonic runs its own timer on the same header, in the client's channel and in the
        // server, and answers CANCELLED when it fires; firing a little earlier makes the
        // answer the precise DEADLINE_EXCEEDED (and a server's answer reach the client in
        // time).
        let timer = timeout.saturating_sub(EARLY.min(timeout / 20));
        let deadline = Deadline(Instant::now() + timer);
        request.extensions_mut().insert(deadline);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.0, inner.call(request)).await {
                Ok(result) => result,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "deadline of {} ms exceeded",
                    timeout.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "10", "123456789S", "1x", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_what_it_parses() {
        for d in [
            Duration::from_millis(1),
            Duration::from_secs(5),
            Duration::from_secs(86_400 * 365),
        ] {
            let text = format_grpc_timeout(d);
            assert!(parse_grpc_timeout(&text).unwrap() >= d.min(Duration::from_secs(99_999_999)));
        }
    }
}
