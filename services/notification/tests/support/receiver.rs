//! A real webhook receiver for tests: an HTTP/1.1 (or HTTPS) server on 127.0.0.1 that
//! records every request, answers with scripted statuses, and counts deliveries of the same
//! id that were in flight at the same time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpis_mesh::testkit::TestPki;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line's path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Received>,
    script: VecDeque<u16>,
    default_status: u16,
    delay: Duration,
    in_flight: HashMap<String, usize>,
    overlaps: usize,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    /// Its base URL (`http://127.0.0.1:<port>` or `https://localhost:<port>`).
    pub base: String,
    /// For HTTPS: the CA bundle its certificate chains to.
    pub ca_file: Option<std::path::PathBuf>,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    _pki: Option<TestPki>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A plain HTTP receiver on loopback answering 200.
    pub async fn start() -> Self {
        Self::start_inner(false).await
    }

    /// An HTTPS receiver (`localhost`), its certificate from a test CA.
    pub async fn start_tls() -> Self {
        Self::start_inner(true).await
    }

    async fn start_inner(tls: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            default_status: 200,
            ..State::default()
        }));
        let arrived = Arc::new(Notify::new());
        let (acceptor, pki, ca_file) = if tls {
            let pki = TestPki::new();
            let files = pki.workload("receiver");
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&files.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
            let ca = files.ca.clone();
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(pki),
                Some(ca),
            )
        } else {
            (None, None, None)
        };
        let task = {
            let state = state.clone();
            let arrived = arrived.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let state = state.clone();
                    let arrived = arrived.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(tls) = acceptor.accept(socket).await {
                                    serve(tls, state, arrived).await;
                                }
                            }
                            None => serve(socket, state, arrived).await,
                        }
                    });
                }
            })
        };
        let base = if tls {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        Self {
            base,
            ca_file,
            state,
            arrived,
            task,
            _pki: pki,
        }
    }

    /// The URL of path `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers the next requests with `statuses`, then with the default.
    pub fn script(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Answers with `status` once the script is used up.
    pub fn answer_by_default(&self, status: u16) {
        self.state.lock().unwrap().default_status = status;
    }

    /// Holds each request this long before answering.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// How many times a delivery id arrived while the same id was still being answered.
    pub fn overlaps(&self) -> usize {
        self.state.lock().unwrap().overlaps
    }

    /// Waits until `accept` holds for the requests so far, at most `within`.
    pub async fn wait_until(
        &self,
        within: Duration,
        accept: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the check: a request arriving in between still wakes us.
            arrived.as_mut().enable();
            let requests = self.requests();
            if accept(&requests) {
                return requests;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "the receiver did not get what was expected within {within:?}: {requests:#?}"
                );
            }
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let id = headers.get("cpis-delivery-id").cloned().unwrap_or_default();
    let (status, delay) = {
        let mut state = state.lock().unwrap();
        let count = state.in_flight.entry(id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            state.overlaps += 1;
        }
        let status = state.script.pop_front().unwrap_or(state.default_status);
        (status, state.delay)
    };
    tokio::time::sleep(delay).await;
    {
        let mut state = state.lock().unwrap();
        if let Some(count) = state.in_flight.get_mut(&id) {
            *count -= 1;
        }
        state.requests.push(Received {
            path,
            headers,
            body,
            status,
        });
    }
    arrived.notify_waiters();
    let answer =
        format!("HTTP/1.1 {status} Status\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}
