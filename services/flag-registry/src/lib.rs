//! The flag-registry service: which children are flagged: flags, their history and uploads.
//!
//! Its RPCs land in their own issue; until then it serves what every service serves
//! (health and reflection) on the mesh runtime.

use std::net::{Ipv4Addr, SocketAddr};

use cpis_mesh::config::NoSection;
use cpis_mesh::server::BoxError;
use cpis_mesh::{Config, MeshContext, MeshService, ServiceDefaults, ServiceParts};
use tonic::service::Routes;

/// The flag-registry service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct FlagRegistry;

impl MeshService for FlagRegistry {
    type Section = NoSection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "flag-registry",
        listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50052),
        admin_listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9502),
    };

    async fn build(
        ctx: MeshContext,
        _config: Config<Self::Section>,
    ) -> Result<ServiceParts, BoxError> {
        Ok(ServiceParts {
            workload: Self::DEFAULTS.name,
            routes: Routes::default(),
            service_names: Vec::new(),
            policy: ctx.policy(),
            checks: Vec::new(),
        })
    }
}
