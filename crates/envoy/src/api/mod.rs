//! The part of Envoy's v3 API the edge uses, as typed structs that serialise to Envoy's own
//! field names. Only what the edge sets is modelled; absent options stay Envoy's defaults.
//!
//! Field names follow the protobuf (`snake_case`), enum values the protobuf enum names, and
//! every `google.protobuf.Any` carries its `@type` from [`TypeUrl`], so a misspelt type
//! cannot be written by hand.

pub(crate) mod cluster;
pub(crate) mod http;
pub(crate) mod tls;

use serde::{Serialize, Serializer};

/// A message that may travel in a `google.protobuf.Any`.
pub(crate) trait TypeUrl {
    /// `type.googleapis.com/<full message name>`.
    const TYPE_URL: &'static str;
}

/// A `google.protobuf.Any` in its JSON/YAML form: `@type` next to the message's fields.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Any<T> {
    #[serde(rename = "@type")]
    type_url: &'static str,
    #[serde(flatten)]
    value: T,
}

impl<T: TypeUrl> Any<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            type_url: T::TYPE_URL,
            value,
        }
    }
}

/// A `google.protobuf.Duration` as Envoy reads it in YAML: `"10s"`, `"0.250s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duration(pub(crate) std::time::Duration);

impl Duration {
    pub(crate) const fn secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub(crate) const fn millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let millis = self.0.subsec_millis();
        let text = if millis == 0 {
            format!("{}s", self.0.as_secs())
        } else {
            format!("{}.{millis:03}s", self.0.as_secs())
        };
        serializer.serialize_str(&text)
    }
}

/// `config.bootstrap.v3.Bootstrap`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bootstrap {
    pub(crate) node: Node,
    pub(crate) admin: Admin,
    pub(crate) static_resources: StaticResources,
    pub(crate) overload_manager: OverloadManager,
}

/// `config.core.v3.Node`: who this Envoy is, in its stats and traces.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) cluster: String,
}

/// `config.bootstrap.v3.Admin`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Admin {
    pub(crate) address: Address,
}

/// `config.core.v3.Address` (socket addresses only).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Address {
    pub(crate) socket_address: SocketAddress,
}

impl Address {
    pub(crate) fn socket(address: &str, port: u16) -> Self {
        Self {
            socket_address: SocketAddress {
                address: address.to_owned(),
                port_value: port,
            },
        }
    }
}

/// `config.core.v3.SocketAddress`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SocketAddress {
    pub(crate) address: String,
    pub(crate) port_value: u16,
}

/// `config.core.v3.DataSource`, from a file only: certificates and keys stay out of the
/// rendered configuration.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DataSource {
    pub(crate) filename: String,
}

/// `config.bootstrap.v3.Bootstrap.StaticResources`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StaticResources {
    pub(crate) listeners: Vec<Listener>,
    pub(crate) clusters: Vec<cluster::Cluster>,
}

/// `config.listener.v3.Listener`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listener {
    pub(crate) name: String,
    pub(crate) address: Address,
    pub(crate) per_connection_buffer_limit_bytes: u32,
    pub(crate) filter_chains: Vec<FilterChain>,
}

/// `config.listener.v3.FilterChain`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FilterChain {
    pub(crate) transport_socket: TransportSocket<tls::DownstreamTlsContext>,
    pub(crate) filters: Vec<NetworkFilter>,
}

/// `config.core.v3.TransportSocket`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransportSocket<T> {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<T>,
}

/// `config.listener.v3.Filter`: the edge has one, the HTTP connection manager.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NetworkFilter {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<http::HttpConnectionManager>,
}

/// `config.overload.v3.OverloadManager`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OverloadManager {
    pub(crate) resource_monitors: Vec<ResourceMonitor>,
}

/// `config.overload.v3.ResourceMonitor` (the connection limit only).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResourceMonitor {
    pub(crate) name: &'static str,
    pub(crate) typed_config: Any<DownstreamConnectionsConfig>,
}

/// `extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DownstreamConnectionsConfig {
    pub(crate) max_active_downstream_connections: u64,
}

impl TypeUrl for DownstreamConnectionsConfig {
    const TYPE_URL: &'static str = "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig";
}
