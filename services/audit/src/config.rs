//! The `[audit]` configuration section (`CPIS_AUDIT_<KEY>`).

use cpis_mesh::config::{ConfigError, ServiceSection, from_str_or_native};
use cpis_mesh::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// The audit service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// `postgres://...` in a cluster; an SQLite file on one machine.
    pub database_url: String,
    /// Connection pool size.
    #[serde(deserialize_with = "from_str_or_native")]
    pub database_max_connections: u32,
    /// The log's origin line in checkpoints: a name that identifies this log for ever.
    pub origin: String,
    /// The Ed25519 seed (32 bytes, hex) that signs checkpoints. Required: keep it out of the
    /// database, so that whoever can change the database cannot sign a new history.
    pub checkpoint_key: Option<String>,
    /// The key's name in signed notes (defaults to the origin).
    pub checkpoint_key_name: Option<String>,
    /// A checkpoint at least this often while the log grows.
    pub checkpoint_interval: HumanDuration,
    /// And as soon as this many events were appended since the last one.
    #[serde(deserialize_with = "from_str_or_native")]
    pub checkpoint_every: u64,
    /// A request for the latest checkpoint or a proof that finds the log grown signs a fresh
    /// checkpoint, but at most one per this gap in a replica (zero: one whenever the log grew).
    pub checkpoint_min_gap: HumanDuration,
    /// Largest batch accepted by Append.
    #[serde(deserialize_with = "from_str_or_native")]
    pub max_batch: u32,
    /// The identity service, whose signing keys verify users' tokens.
    pub identity_url: String,
    /// The flag registry, asked whether a local authority holds or held a flag for the child
    /// its user queries about.
    pub flags_url: String,
    /// How long that question may take before the query is answered UNAVAILABLE.
    pub flags_deadline: HumanDuration,
    /// ODS codes of the national privacy offices, comma-separated: their users with
    /// `audit.read` query the whole log. Everyone else is scoped by the kind of their
    /// organisation (see `docs/audit.md`).
    pub national_organisations: String,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            database_url: "sqlite:.cpis/data/audit.db".to_owned(),
            database_max_connections: 10,
            origin: "cpis.local/audit".to_owned(),
            checkpoint_key: None,
            checkpoint_key_name: None,
            checkpoint_interval: HumanDuration::from_secs(10),
            checkpoint_every: 1000,
            checkpoint_min_gap: HumanDuration::from_secs(1),
            max_batch: 1000,
            identity_url: "https://localhost:50051".to_owned(),
            flags_url: "https://localhost:50052".to_owned(),
            flags_deadline: HumanDuration::from_secs(2),
            // NHS England's national privacy office.
            national_organisations: "X26".to_owned(),
        }
    }
}

impl AuditSection {
    /// The checkpoint signing key's seed.
    pub fn checkpoint_seed(&self) -> Result<[u8; 32], ConfigError> {
        let key = self.checkpoint_key.as_deref().ok_or_else(|| {
            ConfigError::invalid(
                "audit.checkpoint_key",
                "is required (32 random bytes, hex-encoded; `openssl rand -hex 32`)",
            )
        })?;
        cpis_mesh::nhs_hash::decode_hex(key.trim())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| ConfigError::invalid("audit.checkpoint_key", "must be 64 hex digits"))
    }

    /// The national privacy offices' ODS codes.
    pub fn national_organisations(&self) -> Result<Vec<cpis_domain::OdsCode>, ConfigError> {
        self.national_organisations
            .split(',')
            .map(str::trim)
            .filter(|code| !code.is_empty())
            .map(|code| {
                code.parse().map_err(|_| {
                    ConfigError::invalid(
                        "audit.national_organisations",
                        "must be ODS codes separated by commas",
                    )
                })
            })
            .collect()
    }

    /// The name of the checkpoint key.
    pub fn key_name(&self) -> &str {
        self.checkpoint_key_name.as_deref().unwrap_or(&self.origin)
    }
}

impl ServiceSection for AuditSection {
    const NAME: &'static str = "audit";

    fn validate(&self) -> Result<(), ConfigError> {
        self.checkpoint_seed()?;
        if !cpis_merkle::note::is_valid_key_name(self.key_name()) {
            return Err(ConfigError::invalid(
                "audit.checkpoint_key_name",
                "must be a signed-note key name: no spaces or `+`",
            ));
        }
        self.national_organisations()?;
        if self.flags_deadline.get().is_zero() {
            return Err(ConfigError::invalid(
                "audit.flags_deadline",
                "must be longer than zero",
            ));
        }
        if self.checkpoint_every == 0 || self.max_batch == 0 {
            return Err(ConfigError::invalid(
                "audit.checkpoint_every",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
