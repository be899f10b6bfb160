//! Client channels to other services: mTLS with the workload's own (reloaded) certificate, a
//! span and metrics per call with the trace context injected, a default deadline, and one
//! multiplexed HTTP/2 connection reused by every call.
//!
//! Retries are explicit: [`retry_idempotent`] wraps one call known to be safe to repeat.

use std::future::Future;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceBuilder;
use tower::util::ServiceFn;

use crate::coalesce::Coalesced;
use crate::deadline::{ClientDeadlineLayer, EnforceDeadline};
use crate::metrics::Metrics;
use crate::observe::{ClientObserveLayer, Observe};
use crate::tls::MeshTls;

/// A channel to one service, to hand to a generated client (`FooServiceClient::new(channel)`).
pub type MeshChannel = Observe<EnforceDeadline<Channel>>;

/// A channel that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address is not a URI with a host and port.
    #[error("`{0}` is not a service address such as https://flag-registry:50052")]
    Address(String),
}

/// Settings of a channel.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Deadline of a call that sets none.
    pub default_deadline: Duration,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// The name the server's certificate must carry; by default the address's host.
    pub server_name: Option<String>,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            default_deadline: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            server_name: None,
        }
    }
}

/// A lazily connected channel to `address` (`https://host:port`).
pub fn channel(
    address: &str,
    tls: &MeshTls,
    metrics: &Metrics,
    settings: &ChannelSettings,
) -> Result<MeshChannel, ChannelError> {
    let uri: Uri = address
        .parse()
        .map_err(|_| ChannelError::Address(address.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| ChannelError::Address(address.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    uri.port_u16()
        .ok_or_else(|| ChannelError::Address(address.to_owned()))?;
    let server_name = settings.server_name.clone().unwrap_or(host);
    let server_name =
        ServerName::try_from(server_name).map_err(|_| ChannelError::Address(address.to_owned()))?;

    let channel = raw_channel(uri, tls, server_name, settings);
    Ok(ServiceBuilder::new()
        // Outermost: the client span exists before the deadline and the connection.
        .layer(ClientObserveLayer::new(metrics.clone()))
        // Every call leaves with a deadline the server will also see.
        .layer(ClientDeadlineLayer::new(settings.default_deadline))
        .service(channel))
}

/// The bare mTLS channel under [`channel`], without span, metrics or deadline: for tools and
/// tests that must control every header themselves.
pub fn raw_channel(
    uri: Uri,
    tls: &MeshTls,
    server_name: ServerName<'static>,
    settings: &ChannelSettings,
) -> Channel {
    Endpoint::from(uri)
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector(tls.clone(), server_name))
}

type ConnectFuture = std::pin::Pin<
    Box<
        dyn Future<
                Output = Result<
                    TokioIo<Coalesced<tokio_rustls::client::TlsStream<TcpStream>>>,
                    std::io::Error,
                >,
            > + Send,
    >,
>;

fn connector(
    tls: MeshTls,
    server_name: ServerName<'static>,
) -> ServiceFn<impl FnMut(Uri) -> ConnectFuture + Clone> {
    tower::service_fn(move |uri: Uri| -> ConnectFuture {
        let tls = tls.clone();
        let server_name = server_name.clone();
        Box::pin(async move {
            let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host:port");
            let host = uri.host().ok_or_else(invalid)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().ok_or_else(invalid)?;
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            // The configuration current now: a reloaded certificate serves new connections.
            let stream = TlsConnector::from(tls.client_config())
                .connect(server_name, tcp)
                .await?;
            // A request's headers and body leave in one write (see `coalesce`).
            Ok(TokioIo::new(Coalesced::client(stream)))
        })
    })
}

/// How [`retry_idempotent`] retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
        }
    }
}

/// Runs `call` and repeats it, with backoff, while it answers UNAVAILABLE. Only for calls
/// that are idempotent: a repeated call must not change anything twice.
pub async fn retry_idempotent<T, F, Fut>(
    policy: RetryPolicy,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::Unavailable && attempt < policy.max_attempts =>
            {
                tracing::debug!(
                    attempt,
                    message = status.message(),
                    "retrying after UNAVAILABLE"
                );
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_unavailable_at_most_three_times() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
        };
        let result: Result<(), _> = retry_idempotent(policy, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(tonic::Status::unavailable("down")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_idempotent(RetryPolicy::default(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(tonic::Status::invalid_argument("bad")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn success_after_a_retry() {
        let calls = AtomicU32::new(0);
        let result = retry_idempotent(RetryPolicy::default(), || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(tonic::Status::unavailable("down"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
    }
}
