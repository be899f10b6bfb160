//! The `[identity]` configuration section (`CPIS_IDENTITY_<KEY>` variables).

use cpis_mesh::config::{ConfigError, ServiceSection, from_str_or_native};
use cpis_mesh::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// The database of one machine, used when nothing else is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:.cpis/data/identity.db";

/// The variable naming the identity database, also read by `cpis identity`.
pub const DATABASE_URL_VAR: &str = "CPIS_IDENTITY_DATABASE_URL";

/// `[identity]`: the directory's database, session tokens, signing keys and sign-in limits.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// `postgres://...` in a cluster, `sqlite:path` on one machine.
    pub database_url: String,
    /// How long a session token is valid.
    pub token_lifetime: HumanDuration,
    /// How long one signing key signs before a new one takes over.
    pub key_rotation_period: HumanDuration,
    /// How often the keys are re-read from the database (another replica may have rotated)
    /// and the rotation schedule checked.
    pub key_check_interval: HumanDuration,
    /// Hex-encoded 32-byte key that encrypts the signing keys' private halves at rest
    /// (ChaCha20-Poly1305). Required; `openssl rand -hex 32`.
    pub key_encryption_key: Option<String>,
    /// The audit service (`https://audit:50055`), where the outbox relay ships audit events;
    /// empty runs no relay (the events wait in the outbox for one).
    pub audit_address: String,
    /// Redis for sign-in rate limits shared by every replica; unset keeps them in memory
    /// (one replica only).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this service writes.
    pub redis_key_prefix: String,
    /// Failed sign-ins for one username, within `failure_window`, that lock it out.
    #[serde(deserialize_with = "from_str_or_native")]
    pub username_failure_limit: u32,
    /// Failed sign-ins from one calling system, within `failure_window`, that lock it out.
    #[serde(deserialize_with = "from_str_or_native")]
    pub system_failure_limit: u32,
    /// The window in which failures are counted.
    pub failure_window: HumanDuration,
    /// How long a lockout lasts.
    pub lockout_duration: HumanDuration,
    /// The shortest credential accepted for a new user.
    #[serde(deserialize_with = "from_str_or_native")]
    pub min_credential_length: u32,
}

impl std::fmt::Debug for IdentitySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySection")
            .field("database_url", &redact_url(&self.database_url))
            .field("token_lifetime", &self.token_lifetime)
            .field("key_rotation_period", &self.key_rotation_period)
            .field("key_check_interval", &self.key_check_interval)
            .field(
                "key_encryption_key",
                &self.key_encryption_key.as_ref().map(|_| "<redacted>"),
            )
            .field("audit_address", &self.audit_address)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("username_failure_limit", &self.username_failure_limit)
            .field("system_failure_limit", &self.system_failure_limit)
            .field("failure_window", &self.failure_window)
            .field("lockout_duration", &self.lockout_duration)
            .field("min_credential_length", &self.min_credential_length)
            .finish()
    }
}

/// A URL without the password it may carry.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<credentials>@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            token_lifetime: HumanDuration::from_secs(15 * 60),
            key_rotation_period: HumanDuration::from_secs(24 * 3600),
            key_check_interval: HumanDuration::from_secs(60),
            key_encryption_key: None,
            audit_address: "https://localhost:50055".to_owned(),
            redis_url: None,
            redis_key_prefix: "cpis:identity:".to_owned(),
            username_failure_limit: 5,
            system_failure_limit: 100,
            failure_window: HumanDuration::from_secs(15 * 60),
            lockout_duration: HumanDuration::from_secs(15 * 60),
            min_credential_length: 12,
        }
    }
}

impl ServiceSection for IdentitySection {
    const NAME: &'static str = "identity";

    fn validate(&self) -> Result<(), ConfigError> {
        match &self.key_encryption_key {
            None => {
                return Err(ConfigError::invalid(
                    "identity.key_encryption_key",
                    "is required (32 random bytes, hex-encoded; `openssl rand -hex 32`)",
                ));
            }
            Some(key) => {
                crate::keys::KeyEncryption::from_hex(key)
                    .map_err(|e| ConfigError::invalid("identity.key_encryption_key", e))?;
            }
        }
        let positive = [
            ("identity.token_lifetime", self.token_lifetime),
            ("identity.key_rotation_period", self.key_rotation_period),
            ("identity.key_check_interval", self.key_check_interval),
            ("identity.failure_window", self.failure_window),
            ("identity.lockout_duration", self.lockout_duration),
        ];
        for (key, value) in positive {
            if value.get().is_zero() {
                return Err(ConfigError::invalid(key, "must be longer than zero"));
            }
        }
        if self.username_failure_limit == 0 {
            return Err(ConfigError::invalid(
                "identity.username_failure_limit",
                "must be at least 1",
            ));
        }
        if self.system_failure_limit == 0 {
            return Err(ConfigError::invalid(
                "identity.system_failure_limit",
                "must be at least 1",
            ));
        }
        if !(8..=256).contains(&self.min_credential_length) {
            return Err(ConfigError::invalid(
                "identity.min_credential_length",
                "must be between 8 and 256",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpis_mesh::config::{ConfigSource, ServiceDefaults};

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn defaults() -> ServiceDefaults {
        <crate::Identity as cpis_mesh::MeshService>::DEFAULTS
    }

    #[test]
    fn the_key_encryption_key_is_required() {
        let err = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .load::<IdentitySection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("CPIS_IDENTITY_KEY_ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn variables_set_every_kind_of_key() {
        let config = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_IDENTITY_KEY_ENCRYPTION_KEY", KEY)
            .with_var("CPIS_IDENTITY_TOKEN_LIFETIME", "5m")
            .with_var("CPIS_IDENTITY_USERNAME_FAILURE_LIMIT", "3")
            .with_var("CPIS_IDENTITY_REDIS_URL", "redis://:secret@cache:6379")
            .load::<IdentitySection>(&defaults())
            .unwrap();
        let section = config.service;
        assert_eq!(section.token_lifetime.get().as_secs(), 300);
        assert_eq!(section.username_failure_limit, 3);
        assert_eq!(section.database_url, DEFAULT_DATABASE_URL);
        let debug = format!("{section:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("0011"),
            "{debug}"
        );
    }

    #[test]
    fn a_short_key_encryption_key_is_refused() {
        let err = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_IDENTITY_KEY_ENCRYPTION_KEY", "abcd")
            .load::<IdentitySection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("identity.key_encryption_key"), "{err}");
    }
}
