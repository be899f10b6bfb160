//! Serving a service: the mTLS port with its layer stack, health and reflection; the plaintext
//! admin port with `/metrics` and health for probes; graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;
use tower::ServiceBuilder;

use crate::authz::{AccessPolicy, AuthorizeLayer};
use crate::client::{ChannelError, ChannelSettings, MeshChannel};
use crate::config::MeshConfig;
use crate::deadline::ServerDeadlineLayer;
use crate::health::{DependencyCheck, Health};
use crate::incoming::accept_tls;
use crate::metrics::Metrics;
use crate::nhs_hash::NhsHasher;
use crate::observe::ServerObserveLayer;
use crate::shutdown::Shutdown;
use crate::tls::{MeshTls, TlsFiles};
use crate::token::{KeySource, TokenVerifier};

/// A boxed error from start-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Reflection could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The HTTP/2 server failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("server task: {0}")]
    Task(String),
}

/// What every service gets from the mesh at start-up; clones share everything.
#[derive(Debug, Clone)]
pub struct MeshContext {
    /// The mesh's configuration sections.
    pub config: Arc<MeshConfig>,
    /// The workload's TLS material.
    pub tls: MeshTls,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The process's shutdown signal.
    pub shutdown: Shutdown,
    /// Pseudonyms for NHS numbers in logs, spans and metrics.
    pub nhs_hasher: NhsHasher,
}

impl MeshContext {
    /// Loads TLS from the configured files and starts reloading them.
    pub fn new(
        config: MeshConfig,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Result<Self, ServeError> {
        let tls = MeshTls::load(TlsFiles::from(&config.tls), &config.server.trust_domain)?;
        tls.spawn_reloader(config.tls.reload_interval.get(), shutdown.clone());
        let key = config.privacy.nhs_hash_key.as_deref().unwrap_or_default();
        let nhs_hasher = NhsHasher::from_hex(key)
            .map_err(|e| ServeError::Config(format!("privacy.nhs_hash_key: {e}")))?;
        Ok(Self {
            config: Arc::new(config),
            tls,
            metrics,
            shutdown,
            nhs_hasher,
        })
    }

    /// An empty access policy for this mesh: only health and reflection are open.
    pub fn policy(&self) -> AccessPolicy {
        let server = &self.config.server;
        AccessPolicy::new(
            &server.trust_domain,
            &server.namespace,
            &server.edge_workload,
        )
    }

    /// A channel to another service of the mesh at `address` (`https://host:port`).
    pub fn channel(&self, address: &str) -> Result<MeshChannel, ChannelError> {
        crate::client::channel(
            address,
            &self.tls,
            &self.metrics,
            &ChannelSettings::default(),
        )
    }

    /// A token verifier with this mesh's rules and `source` for keys.
    pub fn token_verifier(&self, source: Arc<dyn KeySource>) -> TokenVerifier {
        TokenVerifier::new(source, (&self.config.tokens).into())
    }
}

/// What a service hands the runtime to serve.
pub struct ServiceParts {
    /// The workload name (`flag-registry`), for logs.
    pub workload: &'static str,
    /// The service's gRPC services.
    pub routes: Routes,
    /// Their fully-qualified names, for health and reflection.
    pub service_names: Vec<&'static str>,
    /// Who may call what.
    pub policy: AccessPolicy,
    /// What must answer for the service to be SERVING.
    pub checks: Vec<Arc<dyn DependencyCheck>>,
}

impl std::fmt::Debug for ServiceParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceParts")
            .field("workload", &self.workload)
            .field("service_names", &self.service_names)
            .finish_non_exhaustive()
    }
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound mTLS address.
    pub addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    /// The server's health.
    pub health: Health,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Waits until the server has shut down and drained.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task
            .await
            .map_err(|e| ServeError::Task(e.to_string()))?
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Binds both ports and serves `parts` until the context's shutdown is triggered.
///
/// Shutdown: health turns NOT_SERVING at once; after `server.shutdown_delay` (time for load
/// balancers to notice) no new connection is accepted; in-flight calls get
/// `server.shutdown_grace` to finish; then the admin port closes.
pub async fn start(ctx: &MeshContext, parts: ServiceParts) -> Result<RunningServer, ServeError> {
    let listener = bind(ctx.config.server.listen).await?;
    start_with_listener(ctx, parts, listener).await
}

/// As [`start`], serving the gRPC port on `listener`, bound by the caller (`server.listen`
/// is then not used). A caller that must know the port before the server runs binds a
/// socket, keeps it, and hands it over here, so that no one else can take the port between.
pub async fn start_with_listener(
    ctx: &MeshContext,
    parts: ServiceParts,
    listener: TcpListener,
) -> Result<RunningServer, ServeError> {
    let server_cfg = &ctx.config.server;
    let admin_listener = bind(server_cfg.admin_listen).await?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: server_cfg.listen,
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: server_cfg.admin_listen,
            source,
        })?;

    let health = Health::new(&parts.service_names).await;
    health.spawn_checks(
        parts.checks,
        server_cfg.health_check_interval.get(),
        ctx.shutdown.clone(),
    );

    let routes = crate::reflection::add_reflection(
        parts.routes.add_service(health.server()),
        &parts.service_names,
    )?;
    let stack = ServiceBuilder::new()
        // Outermost, so refused and timed-out calls are traced and counted too.
        .layer(ServerObserveLayer::new(ctx.metrics.clone()))
        // Every call gets a deadline before any work is done.
        .layer(ServerDeadlineLayer::new(server_cfg.max_deadline.get()))
        // Deny by default; the caller's identity goes into the request for handlers.
        .layer(AuthorizeLayer::new(parts.policy))
        .into_inner();
    let incoming = accept_tls(
        listener,
        ctx.tls.clone(),
        server_cfg.handshake_timeout.get(),
        ctx.metrics.clone(),
    );

    let delay = server_cfg.shutdown_delay.get();
    let grace = server_cfg.shutdown_grace.get();
    let stop_accepting = {
        let shutdown = ctx.shutdown.clone();
        let health = health.clone();
        async move {
            shutdown.requested().await;
            health.set_serving(false).await;
            tokio::time::sleep(delay).await;
        }
    };
    let serve = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(stack)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop_accepting);

    let admin = admin_routes(&health, &ctx.metrics);
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(
        Server::builder()
            // Prometheus scrapes over HTTP/1.1; kubelet gRPC probes use HTTP/2.
            .accept_http1(true)
            .add_routes(admin)
            .serve_with_incoming_shutdown(TcpListenerStream::new(admin_listener), async {
                let _ = admin_stopped.await;
            }),
    );

    let shutdown = ctx.shutdown.clone();
    let workload = parts.workload;
    tracing::info!(workload, %addr, %admin_addr, "serving");
    let task = tokio::spawn(async move {
        tokio::pin!(serve);
        let bound = async {
            shutdown.requested().await;
            tokio::time::sleep(delay + grace).await;
        };
        let result = tokio::select! {
            result = &mut serve => result.map_err(ServeError::from),
            () = bound => {
                tracing::warn!(workload, "calls still running after the shutdown grace period; closing");
                Ok(())
            }
        };
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        tracing::info!(workload, "stopped");
        result
    });
    Ok(RunningServer {
        addr,
        admin_addr,
        health,
        task,
    })
}

fn admin_routes(health: &Health, metrics: &Metrics) -> Routes {
    let metrics = metrics.clone();
    let ready = health.clone();
    let router = Routes::new(health.server())
        .into_axum_router()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let serving = ready.is_serving();
                async move {
                    if serving {
                        (http::StatusCode::OK, "SERVING")
                    } else {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
                    }
                }
            }),
        );
    Routes::from(router)
}
