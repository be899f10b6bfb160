//! Typed configuration from defaults, an optional TOML file and `CPIS_*` environment variables.
//!
//! Configuration is a set of flat sections (`[server]`, `[tls]`, `[telemetry]`, `[tokens]`,
//! `[privacy]`, plus one section a service may own, e.g. `[flags]`). Each key can be set in
//! three places, later ones winning:
//!
//! 1. the service's built-in defaults, which work on one machine;
//! 2. the TOML file named by `CPIS_CONFIG` (optional);
//! 3. an environment variable `CPIS_<SECTION>_<KEY>`, e.g. `CPIS_TLS_CERT_FILE` for
//!    `tls.cert_file`. Section names never contain `_`, so the split is unambiguous.
//!
//! Everything is validated at start-up; an error names the key and its variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// Prefix of every configuration variable.
pub const ENV_PREFIX: &str = "CPIS_";
/// The variable naming the optional TOML configuration file.
pub const CONFIG_FILE_VAR: &str = "CPIS_CONFIG";

/// Sections owned by services. A variable for another service's section is ignored rather
/// than refused, so that one environment can configure `cpis dev`, which runs all of them.
pub const SERVICE_SECTIONS: &[&str] = &[
    "identity",
    "flags",
    "attendance",
    "notification",
    "audit",
    "dev",
    "edge",
    "database",
    "redis",
];

/// Sections every service reads through [`MeshConfig`].
const MESH_SECTIONS: &[&str] = &["server", "tls", "telemetry", "tokens", "privacy", "outbox"];

/// A configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    ReadFile {
        /// The file named by `CPIS_CONFIG`.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    ParseFile {
        /// The file named by `CPIS_CONFIG`.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, has the wrong type or an invalid value.
    #[error("configuration key `{key}` (variable {variable}): {message}")]
    Invalid {
        /// Dotted key, e.g. `tls.cert_file`.
        key: String,
        /// The environment variable that sets it, e.g. `CPIS_TLS_CERT_FILE`.
        variable: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// An invalid value for `key`, e.g. from a service's own validation.
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            variable: variable_for(key),
            message: message.into(),
        }
    }
}

/// The environment variable that sets a dotted key: `tls.cert_file` -> `CPIS_TLS_CERT_FILE`.
pub fn variable_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Built-in values a service passes to the loader: its name and its ports on one machine.
#[derive(Debug, Clone)]
pub struct ServiceDefaults {
    /// The service's short name, which is also its workload name (`flag-registry`).
    pub name: &'static str,
    /// Default mTLS service address.
    pub listen: SocketAddr,
    /// Default plaintext admin address (metrics and probes).
    pub admin_listen: SocketAddr,
}

/// A section a service owns in addition to the mesh's sections.
pub trait ServiceSection: Serialize + DeserializeOwned + Default {
    /// The section's name, one of [`SERVICE_SECTIONS`].
    const NAME: &'static str;

    /// Checks values that types alone cannot; an error names the key.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// For services that need nothing beyond the mesh's sections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSection {}

impl ServiceSection for NoSection {
    const NAME: &'static str = "none";
}

/// A service's whole configuration: the mesh's sections and its own.
#[derive(Debug, Clone)]
pub struct Config<S = NoSection> {
    /// Sections every service has.
    pub mesh: MeshConfig,
    /// The service's own section.
    pub service: S,
}

/// The sections every service has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Listening addresses, identity and lifecycle.
    pub server: ServerSection,
    /// Certificate files.
    pub tls: TlsSection,
    /// Logs (traces are configured by the standard `OTEL_*` variables).
    pub telemetry: TelemetrySection,
    /// Verification of users' session tokens.
    pub tokens: TokenSection,
    /// Pseudonymisation of NHS numbers in logs, spans and metrics.
    pub privacy: PrivacySection,
    /// How the service's outbox relay ships its events (ignored by services without one).
    pub outbox: OutboxSection,
}

/// `[server]`: listening addresses, identity and lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The mTLS address serving the service's RPCs, health and reflection.
    pub listen: SocketAddr,
    /// The plaintext admin address: `/metrics` and `grpc.health.v1` for probes.
    pub admin_listen: SocketAddr,
    /// The SPIFFE trust domain of every workload and organisation system.
    pub trust_domain: String,
    /// The Kubernetes namespace the mesh runs in (part of each workload's identity).
    pub namespace: String,
    /// The workload name of the edge proxy, whose `x-forwarded-client-cert` is believed.
    pub edge_workload: String,
    /// Deadline applied to a call that arrives without one, and the cap on any it brings.
    pub max_deadline: HumanDuration,
    /// How long a TLS handshake may take before the connection is dropped.
    pub handshake_timeout: HumanDuration,
    /// Time between reporting NOT_SERVING and refusing new connections on shutdown.
    pub shutdown_delay: HumanDuration,
    /// Bound on draining in-flight calls on shutdown.
    pub shutdown_grace: HumanDuration,
    /// How often dependencies (database, Redis) are checked for the health status.
    pub health_check_interval: HumanDuration,
}

/// `[tls]`: PEM files, reloaded when they change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate authorities trusted for peers (PEM bundle).
    pub ca_file: PathBuf,
    /// This workload's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// This workload's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// How often the files are checked for changes.
    pub reload_interval: HumanDuration,
}

/// `[telemetry]`: logs. Traces follow `OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// `json` (default; one object per line with trace ids) or `pretty` (for a terminal).
    pub log_format: LogFormat,
    /// A `tracing` filter directive such as `info` or `info,cpis_mesh=debug`.
    pub log_filter: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// `[tokens]`: what a user's session token must say to be accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// The issuer (`iss`) tokens must name.
    pub issuer: String,
    /// The audience (`aud`) tokens must name.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: HumanDuration,
}

/// `[privacy]`: the key of the NHS number pseudonyms.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// Hex-encoded key (at least 32 bytes) of the keyed hash that stands in for NHS numbers in
    /// logs, span attributes and metrics. Required; the same in every service, so that one
    /// child can be followed across the mesh without being named.
    pub nhs_hash_key: Option<String>,
}

/// `[outbox]`: how a service's outbox relay ships its events to audit and notification
/// (see docs/outbox.md). Services without an outbox (audit) ignore it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Events per claim and delivery, 1 to 1,000: enough for one `linger` of events at the
    /// expected rate, so that a period's events go in one delivery.
    #[serde(deserialize_with = "from_str_or_native")]
    pub batch_size: usize,
    /// The period of each destination's deliveries under load (at most 10 s): an event
    /// waits up to this long; each delivery costs its destination a durable commit.
    pub linger: HumanDuration,
    /// How often an idle relay looks for events written by other replicas or due again
    /// after a failure (10 ms to 5 min).
    pub poll_interval: HumanDuration,
}

impl std::fmt::Debug for PrivacySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacySection")
            .field(
                "nhs_hash_key",
                &self.nhs_hash_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl MeshConfig {
    /// The built-in defaults for a service on one machine.
    pub fn defaults(service: &ServiceDefaults) -> Self {
        Self {
            server: ServerSection {
                listen: service.listen,
                admin_listen: service.admin_listen,
                trust_domain: "cpis.local".to_owned(),
                namespace: "cpis".to_owned(),
                edge_workload: "edge".to_owned(),
                max_deadline: HumanDuration::from_secs(30),
                handshake_timeout: HumanDuration::from_secs(10),
                shutdown_delay: HumanDuration::from_secs(0),
                shutdown_grace: HumanDuration::from_secs(20),
                health_check_interval: HumanDuration::from_secs(2),
            },
            tls: TlsSection {
                ca_file: PathBuf::from("/etc/cpis/tls/ca.crt"),
                cert_file: PathBuf::from("/etc/cpis/tls/tls.crt"),
                key_file: PathBuf::from("/etc/cpis/tls/tls.key"),
                reload_interval: HumanDuration::from_secs(5),
            },
            telemetry: TelemetrySection {
                log_format: LogFormat::Json,
                log_filter: "info".to_owned(),
            },
            tokens: TokenSection {
                issuer: "cpis-identity".to_owned(),
                audience: "cpis".to_owned(),
                leeway: HumanDuration::from_secs(30),
            },
            privacy: PrivacySection::default(),
            outbox: OutboxSection {
                batch_size: crate::outbox::DEFAULT_BATCH_SIZE,
                linger: HumanDuration::from(crate::outbox::DEFAULT_LINGER),
                poll_interval: HumanDuration::from(crate::outbox::DEFAULT_POLL_INTERVAL),
            },
        }
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::identity::validate_label(&self.server.trust_domain)
            .map_err(|m| ConfigError::invalid("server.trust_domain", m))?;
        crate::identity::validate_label(&self.server.namespace)
            .map_err(|m| ConfigError::invalid("server.namespace", m))?;
        crate::identity::validate_label(&self.server.edge_workload)
            .map_err(|m| ConfigError::invalid("server.edge_workload", m))?;
        self.outbox.validate()?;
        match &self.privacy.nhs_hash_key {
            None => Err(ConfigError::invalid(
                "privacy.nhs_hash_key",
                "is required (at least 32 random bytes, hex-encoded; `openssl rand -hex 32`)",
            )),
            Some(key) => crate::nhs_hash::NhsHasher::from_hex(key)
                .map(|_| ())
                .map_err(|e| ConfigError::invalid("privacy.nhs_hash_key", e.to_string())),
        }
    }
}

impl OutboxSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.batch_size) {
            return Err(ConfigError::invalid(
                "outbox.batch_size",
                "must be from 1 to 1000",
            ));
        }
        if self.linger.get() > Duration::from_secs(10) {
            return Err(ConfigError::invalid(
                "outbox.linger",
                "must be at most 10s: events wait up to this long",
            ));
        }
        let poll = self.poll_interval.get();
        if poll < Duration::from_millis(10) || poll > Duration::from_secs(300) {
            return Err(ConfigError::invalid(
                "outbox.poll_interval",
                "must be from 10ms to 5m",
            ));
        }
        Ok(())
    }
}

/// Where configuration comes from: the environment and an optional file.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    env: BTreeMap<String, String>,
    file: Option<PathBuf>,
}

impl ConfigSource {
    /// The process environment, and the file named by `CPIS_CONFIG` if set.
    pub fn from_process() -> Self {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let file = env.get(CONFIG_FILE_VAR).map(PathBuf::from);
        Self { env, file }
    }

    /// No environment and no file: the defaults alone (tests add to it).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds or replaces one variable.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Sets the configuration file.
    pub fn with_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Loads and validates a service's configuration.
    pub fn load<S: ServiceSection>(
        &self,
        service: &ServiceDefaults,
    ) -> Result<Config<S>, ConfigError> {
        let mut table = to_table(&MeshConfig::defaults(service));
        if S::NAME != NoSection::NAME {
            table.insert(
                S::NAME.to_owned(),
                toml::Value::Table(to_table(&S::default())),
            );
        }
        if let Some(path) = &self.file {
            overlay(&mut table, read_file(path)?, S::NAME)?;
        }
        overlay(&mut table, self.env_table()?, S::NAME)?;

        let service_table = table.remove(S::NAME);
        let mesh: MeshConfig = deserialize(table, "")?;
        mesh.validate()?;
        let section: S = match service_table {
            Some(t) => deserialize_value(t, S::NAME)?,
            None => S::default(),
        };
        section.validate()?;
        Ok(Config {
            mesh,
            service: section,
        })
    }

    /// The `CPIS_*` variables as a table of sections; values stay strings.
    fn env_table(&self) -> Result<toml::Table, ConfigError> {
        let mut table = toml::Table::new();
        for (name, value) in &self.env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == CONFIG_FILE_VAR {
                continue;
            }
            let Some((section, key)) = rest.split_once('_') else {
                return Err(unknown_variable(name));
            };
            let section = section.to_ascii_lowercase();
            let key = key.to_ascii_lowercase();
            if !MESH_SECTIONS.contains(&section.as_str())
                && !SERVICE_SECTIONS.contains(&section.as_str())
            {
                return Err(unknown_variable(name));
            }
            let entry = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(key, toml::Value::String(value.clone()));
            }
        }
        Ok(table)
    }
}

fn unknown_variable(name: &str) -> ConfigError {
    ConfigError::Invalid {
        key: name.to_owned(),
        variable: name.to_owned(),
        message: format!(
            "unknown variable; CPIS_* variables are CPIS_<SECTION>_<KEY> with a section among {}",
            MESH_SECTIONS
                .iter()
                .chain(SERVICE_SECTIONS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Lays `upper` over `base` section by section. Unknown sections are refused unless they belong
/// to another service (ignored: one file may configure the whole mesh).
fn overlay(base: &mut toml::Table, upper: toml::Table, own: &str) -> Result<(), ConfigError> {
    for (section, value) in upper {
        let known_mesh = MESH_SECTIONS.contains(&section.as_str());
        if !known_mesh && section != own {
            if SERVICE_SECTIONS.contains(&section.as_str()) {
                continue;
            }
            return Err(ConfigError::invalid(&section, "unknown section"));
        }
        let toml::Value::Table(keys) = value else {
            return Err(ConfigError::invalid(&section, "must be a table of keys"));
        };
        let target = base
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(target) = target {
            target.extend(keys);
        }
    }
    Ok(())
}

fn to_table<T: Serialize>(value: &T) -> toml::Table {
    // Serialising our own plain config structs cannot fail; an empty table would surface as
    // missing-key errors naming the key, never as silent wrong values.
    toml::Table::try_from(value).unwrap_or_default()
}

fn deserialize<T: DeserializeOwned>(table: toml::Table, prefix: &str) -> Result<T, ConfigError> {
    deserialize_value(toml::Value::Table(table), prefix)
}

fn deserialize_value<T: DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = match (prefix.is_empty(), path == ".") {
            (true, _) => path,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{path}"),
        };
        ConfigError::invalid(&key, e.into_inner().to_string())
    })
}

/// Deserialises a number or a boolean from its native TOML form or from a string, as
/// environment variables carry. Use with `#[serde(deserialize_with = "...")]`.
pub fn from_str_or_native<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Text(String),
        Native(T),
    }
    match Either::<T>::deserialize(deserializer)? {
        Either::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
        Either::Native(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn defaults() -> ServiceDefaults {
        ServiceDefaults {
            name: "audit",
            listen: "127.0.0.1:50055".parse().unwrap(),
            admin_listen: "127.0.0.1:9505".parse().unwrap(),
        }
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AuditSection {
        #[serde(deserialize_with = "from_str_or_native")]
        checkpoint_every: u32,
    }

    impl Default for AuditSection {
        fn default() -> Self {
            Self {
                checkpoint_every: 100,
            }
        }
    }

    impl ServiceSection for AuditSection {
        const NAME: &'static str = "audit";
    }

    #[test]
    fn defaults_with_a_key_load() {
        let cfg = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .load::<NoSection>(&defaults())
            .unwrap();
        assert_eq!(cfg.mesh.server.listen.port(), 50055);
        assert_eq!(cfg.mesh.server.trust_domain, "cpis.local");
    }

    #[test]
    fn missing_hash_key_names_the_variable() {
        let err = ConfigSource::empty()
            .load::<NoSection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("CPIS_PRIVACY_NHS_HASH_KEY"), "{err}");
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let dir = tempfile_dir();
        let file = dir.join("cpis.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"0.0.0.0:7000\"\nnamespace = \"prod\"\n[audit]\ncheckpoint_every = 7\n[flags]\nwhatever = 1\n",
        )
        .unwrap();
        let cfg = ConfigSource::empty()
            .with_file(&file)
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_SERVER_NAMESPACE", "staging")
            .with_var("CPIS_AUDIT_CHECKPOINT_EVERY", "9")
            .load::<AuditSection>(&defaults())
            .unwrap();
        assert_eq!(cfg.mesh.server.listen.port(), 7000);
        assert_eq!(cfg.mesh.server.namespace, "staging");
        assert_eq!(cfg.service.checkpoint_every, 9);
    }

    #[test]
    fn the_outbox_relay_is_configured_by_its_own_variables() {
        let cfg = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .load::<NoSection>(&defaults())
            .unwrap();
        assert_eq!(cfg.mesh.outbox.batch_size, 250);
        assert_eq!(cfg.mesh.outbox.linger.get(), Duration::from_millis(100));
        let cfg = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_OUTBOX_BATCH_SIZE", "40")
            .with_var("CPIS_OUTBOX_LINGER", "20ms")
            .with_var("CPIS_OUTBOX_POLL_INTERVAL", "5s")
            .load::<NoSection>(&defaults())
            .unwrap();
        assert_eq!(cfg.mesh.outbox.batch_size, 40);
        assert_eq!(cfg.mesh.outbox.linger.get(), Duration::from_millis(20));
        assert_eq!(cfg.mesh.outbox.poll_interval.get(), Duration::from_secs(5));
        for (var, value, key) in [
            ("CPIS_OUTBOX_BATCH_SIZE", "0", "outbox.batch_size"),
            ("CPIS_OUTBOX_BATCH_SIZE", "5000", "outbox.batch_size"),
            ("CPIS_OUTBOX_LINGER", "1m", "outbox.linger"),
            ("CPIS_OUTBOX_POLL_INTERVAL", "1ms", "outbox.poll_interval"),
        ] {
            let err = ConfigSource::empty()
                .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
                .with_var(var, value)
                .load::<NoSection>(&defaults())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains(var),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_key_and_variable() {
        let err = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_SERVER_LISTEN", "not-an-address")
            .load::<NoSection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains("CPIS_SERVER_LISTEN"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_TLS_CERT_FIEL", "/x")
            .load::<NoSection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cert_fiel"), "{err}");
    }

    #[test]
    fn an_unknown_section_is_refused() {
        let err = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_SERVR_LISTEN", "127.0.0.1:1")
            .load::<NoSection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("CPIS_SERVR_LISTEN"), "{err}");
    }

    #[test]
    fn a_bad_duration_is_refused() {
        let err = ConfigSource::empty()
            .with_var("CPIS_PRIVACY_NHS_HASH_KEY", KEY)
            .with_var("CPIS_SERVER_MAX_DEADLINE", "soon")
            .load::<NoSection>(&defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.max_deadline"), "{err}");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cpis-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
