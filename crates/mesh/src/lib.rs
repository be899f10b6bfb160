//! The CP-IS mesh runtime: every cross-cutting concern of the services, once.
//!
//! A service is built from:
//! - [`config`]: typed configuration from defaults, a TOML file and `CPIS_*` variables;
//! - [`tls`] and [`identity`]: mTLS from reloaded PEM files, peers named by one SPIFFE ID;
//! - [`authz`]: a per-RPC allow-list of peers, deny by default, the edge's forwarded client;
//! - [`observe`], [`propagation`], [`telemetry`], [`metrics`]: one span and one set of
//!   metrics per call, W3C trace context in and out, JSON logs, OTLP export;
//! - [`deadline`]: every call has a deadline, on servers and clients;
//! - [`health`], [`reflection`]: `grpc.health.v1` following dependencies, reflection v1 and
//!   v1alpha;
//! - [`server`], [`client`], [`shutdown`], [`runtime`]: serving, channels, graceful stop;
//! - [`db`]: Postgres or SQLite by URL, embedded migrations, a health check;
//! - [`outbox`]: events written in the caller's transaction, shipped at least once by a relay;
//! - [`token`]: users' EdDSA session tokens and activities;
//! - [`nhs_hash`]: pseudonyms of NHS numbers for logs, spans and metrics;
//! - [`error`]: one mapping from errors to `tonic::Status` with field violations;
//! - [`devpki`]: a development CA for tests and `cpis dev`;
//! - [`global_allocator!`]: jemalloc as a binary's allocator.

pub mod authz;
pub mod client;
mod coalesce;
pub mod config;
pub mod db;
pub mod deadline;
pub mod devpki;
pub mod duration;
pub mod error;
pub mod health;
pub mod identity;
pub mod incoming;
pub mod metrics;
pub mod nhs_hash;
pub mod observe;
pub mod outbox;
pub mod propagation;
pub mod reflection;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod token;

/// jemalloc, for [`global_allocator!`].
#[doc(hidden)]
pub use tikv_jemallocator as jemalloc;

/// Makes jemalloc the allocator of the binary whose `main.rs` invokes it (every binary of
/// the project does). The services allocate and free many small buffers per call (HTTP/2
/// frames, protobuf messages, SQL rows) on several threads: with glibc's malloc, 14% of the
/// mesh's CPU under load went to allocation, and jemalloc gave 10-15% more checks per
/// second (docs/performance.md).
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static GLOBAL_ALLOCATOR: $crate::jemalloc::Jemalloc = $crate::jemalloc::Jemalloc;
    };
}

pub use authz::{AccessPolicy, Caller, PeerClass};
pub use config::{Config, ConfigSource, ServiceDefaults, ServiceSection};
pub use error::{ApiError, FieldViolation};
pub use runtime::{MeshService, run_main};
pub use server::{MeshContext, RunningServer, ServiceParts, start, start_with_listener};
pub use shutdown::Shutdown;
