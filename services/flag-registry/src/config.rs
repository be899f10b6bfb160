//! The `[flags]` configuration section (`CPIS_FLAGS_<KEY>`).

use std::fmt;

use cpis_domain::{VisibilityWindows, Window};
use cpis_mesh::config::{ConfigError, ServiceSection, from_str_or_native};
use cpis_mesh::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// The flag registry's own settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlagsSection {
    /// `postgres://...` in a cluster; an SQLite file on one machine.
    pub database_url: String,
    /// Connection pool size.
    #[serde(deserialize_with = "from_str_or_native")]
    pub database_max_connections: u32,
    /// The identity service: signing keys (tokens) and the person register (traces).
    pub identity_url: String,
    /// The audit service the outbox ships to; empty keeps events in the outbox.
    pub audit_address: String,
    /// Redis for the `GetFlags` cache; unset: a bounded cache in the process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this service writes.
    pub redis_key_prefix: String,
    /// How long a cached `GetFlags` answer lives at most (a bound on staleness should an
    /// invalidation be lost while Redis is down).
    pub cache_ttl: HumanDuration,
    /// How many NHS numbers the in-process cache holds at most.
    #[serde(deserialize_with = "from_str_or_native")]
    pub cache_capacity: u32,
    /// How long a child protection plan stays "recently ended".
    pub window_cpp: Window,
    /// How long a looked-after child flag stays "recently ended".
    pub window_lac: Window,
    /// How long an unborn child protection plan stays "recently ended".
    pub window_ucpp: Window,
}

impl Default for FlagsSection {
    fn default() -> Self {
        let windows = VisibilityWindows::default();
        Self {
            database_url: "sqlite:.cpis/data/flags.db".to_owned(),
            database_max_connections: 10,
            identity_url: "https://localhost:50051".to_owned(),
            audit_address: "https://localhost:50055".to_owned(),
            redis_url: None,
            redis_key_prefix: "cpis:flags:".to_owned(),
            cache_ttl: HumanDuration::from_secs(300),
            cache_capacity: 100_000,
            window_cpp: windows.child_protection_plan,
            window_lac: windows.looked_after_child,
            window_ucpp: windows.unborn_child_protection_plan,
        }
    }
}

impl fmt::Debug for FlagsSection {
    /// Hides credentials in URLs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagsSection")
            .field("database_url", &redact_url(&self.database_url))
            .field("identity_url", &self.identity_url)
            .field("audit_address", &self.audit_address)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<credentials>@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl FlagsSection {
    /// The visibility windows configured.
    pub fn windows(&self) -> VisibilityWindows {
        VisibilityWindows {
            child_protection_plan: self.window_cpp,
            looked_after_child: self.window_lac,
            unborn_child_protection_plan: self.window_ucpp,
        }
    }
}

impl ServiceSection for FlagsSection {
    const NAME: &'static str = "flags";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_capacity == 0 {
            return Err(ConfigError::invalid(
                "flags.cache_capacity",
                "must be at least 1",
            ));
        }
        if self.cache_ttl.get().is_zero() {
            return Err(ConfigError::invalid("flags.cache_ttl", "must be positive"));
        }
        Ok(())
    }
}
