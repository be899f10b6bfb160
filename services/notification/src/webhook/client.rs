//! The HTTPS client of deliveries: one HTTP/1.1 POST per connection (hyper over
//! tokio-rustls, ring), trusting the web PKI roots and the configured CA bundle. Plain HTTP
//! is used only for loopback URLs, which registration alone admits.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// At most this much of an answer is read (and dropped): receivers answer with a status.
const MAX_ANSWER: usize = 64 * 1024;

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA bundle cannot be read or holds no certificate.
    #[error("webhook CA bundle {path}: {reason}")]
    CaBundle {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("webhook TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Posts deliveries.
#[derive(Clone)]
pub struct WebhookClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A receiver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
}

impl WebhookClient {
    /// A client trusting the web PKI roots and the certificates of `ca_file`, giving up on
    /// an attempt after `timeout`.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            let bad = |reason: String| ClientError::CaBundle {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".to_owned()));
            }
            for cert in certs {
                roots.add(cert)?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// POSTs `body` as JSON to `url` with `headers`; the receiver's status, or why there is
    /// none (connection, TLS, timeout), for people to read.
    pub async fn post(
        &self,
        url: &http::Uri,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        tokio::time::timeout(self.timeout, self.attempt(url, headers, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }

    async fn attempt(
        &self,
        url: &http::Uri,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let authority = url.authority().ok_or("the URL has no host")?;
        let https = url.scheme_str() == Some("https");
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let path = url
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let mut request = http::Request::post(path)
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "cpis-notification");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Cursor::new(body)))
            .map_err(|e| format!("request: {e}"))?;
        if https {
            let name = ServerName::try_from(host).map_err(|e| format!("server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }
}

async fn send<I>(io: I, request: http::Request<Full<Cursor<Vec<u8>>>>) -> Result<Answer, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection is driven alongside; it ends with the exchange (or the timeout).
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = 0usize;
        while read < MAX_ANSWER {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len());
                }
                _ => break,
            }
        }
        Ok(Answer { status })
    }
    .await;
    driver.abort();
    answer
}
