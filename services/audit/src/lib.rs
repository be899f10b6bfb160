//! The audit service: the append-only, tamper-evident log of every access.
//!
//! Its RPCs land in their own issue; until then it serves what every service serves
//! (health and reflection) on the mesh runtime.

use std::net::{Ipv4Addr, SocketAddr};

use cpis_mesh::config::NoSection;
use cpis_mesh::server::BoxError;
use cpis_mesh::{Config, MeshContext, MeshService, ServiceDefaults, ServiceParts};
use tonic::service::Routes;

/// The audit service, as the runtime runs it.
#[derive(Debug, Clone, Copy)]
pub struct Audit;

impl MeshService for Audit {
    type Section = NoSection;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "audit",
        listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50055),
        admin_listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9505),
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
