//! Accepting mTLS connections: each handshake runs on its own task with a bound, so a slow or
//! hostile client cannot hold up others, and each connection carries its peer's identity.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::coalesce::Coalesced;
use crate::identity::PeerIdentity;
use crate::metrics::Metrics;
use crate::tls::MeshTls;

/// What a request knows of the connection it came on; found in the request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The remote socket address.
    pub remote_addr: Option<SocketAddr>,
    /// The identity in the peer's verified certificate.
    pub identity: PeerIdentity,
}

/// An accepted, authenticated mTLS connection. Its writes are held until HTTP/2 flushes
/// ([`Coalesced`]): an answer and its trailers leave as one TLS record.
#[derive(Debug)]
pub struct TlsConnection {
    stream: Coalesced<TlsStream<TcpStream>>,
    peer: PeerInfo,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The stream of authenticated connections tonic serves.
pub type Incoming = ReceiverStream<Result<TlsConnection, io::Error>>;

/// Accepts connections on `listener` and hands over those that complete an mTLS handshake
/// within `handshake_timeout`. Accepting stops when the returned stream is dropped (tonic
/// drops it when shutdown begins).
pub fn accept_tls(
    listener: TcpListener,
    tls: MeshTls,
    handshake_timeout: Duration,
    metrics: Metrics,
) -> Incoming {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually descriptor exhaustion: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.server_config());
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
                let stream = match handshake.await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        let reason = refusal_reason(&error);
                        tracing::info!(%remote_addr, reason, %error, "TLS handshake refused");
                        metrics.handshake_failed(reason);
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote_addr, "TLS handshake timed out");
                        metrics.handshake_failed("timeout");
                        return;
                    }
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| PeerIdentity::from_certificate(leaf));
                // The verifier already required exactly one SPIFFE ID; this is belt and braces.
                let Some(Ok(identity)) = identity else {
                    tracing::debug!(%remote_addr, "peer without a usable identity");
                    return;
                };
                let connection = TlsConnection {
                    stream: Coalesced::new(stream),
                    peer: PeerInfo {
                        remote_addr: Some(remote_addr),
                        identity,
                    },
                };
                let _ = tx.send(Ok(connection)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A short, fixed reason for a refused handshake, for logs and the metric label.
fn refusal_reason(error: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no_client_certificate",
        // The mesh's own checks: one SPIFFE ID of the trust domain.
        Some(Error::InvalidCertificate(
            CertificateError::Other(_) | CertificateError::NotValidForName,
        )) => "identity",
        Some(Error::InvalidCertificate(_)) => "untrusted_certificate",
        Some(_) => "protocol",
        None => "io",
    }
}
