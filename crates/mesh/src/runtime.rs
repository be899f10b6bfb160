//! The one way a service binary runs: load configuration, set up telemetry, build the service,
//! serve until SIGTERM, drain, flush, exit. A service's `main.rs` is a call to [`run_main`].

use std::future::Future;
use std::process::ExitCode;

use crate::config::{Config, ConfigSource, ServiceDefaults, ServiceSection};
use crate::metrics::Metrics;
use crate::server::{BoxError, MeshContext, ServiceParts, start};
use crate::shutdown::Shutdown;

/// A service of the mesh, as the runtime and `cpis dev` see it.
pub trait MeshService {
    /// The service's own configuration section.
    type Section: ServiceSection + Send + 'static;

    /// Its name and default addresses on one machine.
    const DEFAULTS: ServiceDefaults;

    /// Applies the service's database migrations (the `migrate` subcommand, for a Helm hook
    /// Job); services without a database have nothing to do.
    fn migrate(
        config: &Config<Self::Section>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = config;
        async { Ok(()) }
    }

    /// Builds the service's routes, access policy and dependency checks.
    fn build(
        ctx: MeshContext,
        config: Config<Self::Section>,
    ) -> impl Future<Output = Result<ServiceParts, BoxError>> + Send;
}

/// Runs service `S` as a process: configuration from `CPIS_*`/`OTEL_*` and `CPIS_CONFIG`,
/// exit code 0 after a graceful shutdown, 2 for bad configuration, 1 for other failures.
/// With the argument `migrate`, applies the database migrations and exits.
pub async fn run_main<S: MeshService>() -> ExitCode {
    let config = match ConfigSource::from_process().load::<S::Section>(&S::DEFAULTS) {
        Ok(config) => config,
        Err(error) => {
            // Logging is not set up yet: this is the one place a service writes to stderr.
            eprintln!("{}: {error}", S::DEFAULTS.name);
            return ExitCode::from(2);
        }
    };
    let telemetry = match crate::telemetry::init(S::DEFAULTS.name, &config.mesh.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{}: {error}", S::DEFAULTS.name);
            return ExitCode::from(2);
        }
    };
    let migrate_only = std::env::args().nth(1).as_deref() == Some("migrate");
    let outcome = if migrate_only {
        S::migrate(&config)
            .await
            .map(|()| tracing::info!("migrations applied"))
    } else {
        serve::<S>(config).await
    };
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "service failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn serve<S: MeshService>(config: Config<S::Section>) -> Result<(), BoxError> {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let ctx = MeshContext::new(config.mesh.clone(), Metrics::new(), shutdown)?;
    let parts = S::build(ctx.clone(), config).await?;
    let server = start(&ctx, parts).await?;
    server.wait().await?;
    Ok(())
}
