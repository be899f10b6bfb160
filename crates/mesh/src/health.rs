//! `grpc.health.v1`: SERVING only while every dependency answers and until shutdown begins.
//!
//! tonic-health reports a server SERVING from the start; here every name (the overall `""`
//! and each gRPC service) starts NOT_SERVING and follows the dependency checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::shutdown::Shutdown;

/// Something a service needs in order to serve: its database, Redis where required.
pub trait DependencyCheck: Send + Sync + 'static {
    /// A short name for logs (`database`).
    fn name(&self) -> &str;
    /// Succeeds when the dependency answers.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The health of one server, shared by its mTLS port and its admin port.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
    names: Arc<Vec<String>>,
    serving: Arc<AtomicBool>,
}

impl Health {
    /// Health for the given gRPC service names, all NOT_SERVING until [`set_serving`] says
    /// otherwise.
    ///
    /// [`set_serving`]: Self::set_serving
    pub async fn new(service_names: &[&str]) -> Self {
        let mut names = vec![String::new()];
        names.extend(service_names.iter().map(|s| (*s).to_owned()));
        let health = Self {
            reporter: HealthReporter::new(),
            names: Arc::new(names),
            serving: Arc::new(AtomicBool::new(false)),
        };
        health.set_serving(false).await;
        health
    }

    /// A `grpc.health.v1.Health` server reading this health.
    pub fn server(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    /// Whether the server reports SERVING.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Sets every name SERVING or NOT_SERVING.
    pub async fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in self.names.iter() {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// Runs `checks` now and every `interval`; SERVING while all pass, NOT_SERVING from the
    /// first failure and, for good, once shutdown begins.
    pub fn spawn_checks(
        &self,
        checks: Vec<Arc<dyn DependencyCheck>>,
        interval: Duration,
        shutdown: Shutdown,
    ) {
        let health = self.clone();
        tokio::spawn(async move {
            let mut last: Option<bool> = None;
            loop {
                let mut healthy = true;
                for check in &checks {
                    if let Err(error) = check.check().await {
                        if last != Some(false) {
                            tracing::warn!(dependency = check.name(), %error, "dependency check failed");
                        }
                        healthy = false;
                    }
                }
                if shutdown.is_requested() {
                    break;
                }
                if last != Some(healthy) {
                    health.set_serving(healthy).await;
                    tracing::info!(serving = healthy, "health changed");
                    last = Some(healthy);
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = shutdown.requested() => break,
                }
            }
            health.set_serving(false).await;
        });
    }
}
