//! The `[notification]` configuration section (`CPIS_NOTIFICATION_<KEY>`).

use cpis_mesh::config::{ConfigError, ServiceSection, from_str_or_native};
use cpis_mesh::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// The notification service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSection {
    /// `postgres://...` in a cluster; an SQLite file on one machine.
    pub database_url: String,
    /// Connection pool size.
    #[serde(deserialize_with = "from_str_or_native")]
    pub database_max_connections: u32,
    /// The identity service, whose signing keys verify users' tokens.
    pub identity_url: String,
    /// The audit service (`https://audit:50055`), where the outbox relay ships the audit
    /// events of inbox reads and acknowledgements; empty runs no relay (the events wait in
    /// the outbox for one).
    pub audit_address: String,
    /// Redis for the live fan-out across replicas (`redis://...`); without it, live
    /// notifications reach only the subscribers of the replica that stored them (one
    /// process).
    pub redis_url: Option<String>,
    /// Prefix of the Redis pub/sub channel, so that several meshes can share one Redis.
    pub redis_channel_prefix: String,
    /// A keep-alive on an idle Subscribe stream at least this often (at most 30 s, as
    /// the contract promises).
    pub keep_alive: HumanDuration,
    /// Largest batch accepted by Publish.
    #[serde(deserialize_with = "from_str_or_native")]
    pub max_batch: u32,
}

impl Default for NotificationSection {
    fn default() -> Self {
        Self {
            database_url: "sqlite:.cpis/data/notification.db".to_owned(),
            database_max_connections: 10,
            identity_url: "https://localhost:50051".to_owned(),
            audit_address: "https://localhost:50055".to_owned(),
            redis_url: None,
            redis_channel_prefix: "cpis:".to_owned(),
            keep_alive: HumanDuration::from_secs(15),
            max_batch: 500,
        }
    }
}

impl NotificationSection {
    /// The Redis channel live notifications travel on.
    pub fn redis_channel(&self) -> String {
        format!("{}notification:live", self.redis_channel_prefix)
    }
}

impl ServiceSection for NotificationSection {
    const NAME: &'static str = "notification";

    fn validate(&self) -> Result<(), ConfigError> {
        let keep_alive = self.keep_alive.get();
        if keep_alive.is_zero() || keep_alive > std::time::Duration::from_secs(30) {
            return Err(ConfigError::invalid(
                "notification.keep_alive",
                "must be more than 0 and at most 30s",
            ));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid(
                "notification.max_batch",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
