//! Reaching a running mesh: where each service answers, which client certificate to present
//! and which session token to send.
//!
//! Every value comes from a flag, else its environment variable, else the data directory:
//! `cpis login` keeps the session (token and the client system it signed in through) in
//! `<data-dir>/session.json`, and `cpis dev` describes its demo in `<data-dir>/demo.json`.
//! Without `--endpoint` each service is reached at its `cpis dev` port on localhost; with it
//! (the Envoy edge of a deployed mesh) every call goes to that one address.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::tls::{MeshTls, TlsFiles};
use serde::{Deserialize, Serialize};
use tonic::Request;
use tonic::metadata::MetadataValue;

use crate::failure::Failure;

/// The five services, with their `cpis dev` ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Identity,
    FlagRegistry,
    Attendance,
    Notification,
    Audit,
}

impl Service {
    /// Every service, in port order.
    pub(crate) const ALL: [Self; 5] = [
        Self::Identity,
        Self::FlagRegistry,
        Self::Attendance,
        Self::Notification,
        Self::Audit,
    ];

    /// The workload name (`flag-registry`, ...).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::FlagRegistry => "flag-registry",
            Self::Attendance => "attendance",
            Self::Notification => "notification",
            Self::Audit => "audit",
        }
    }

    /// The mTLS port of the service under `cpis dev` (and in the chart).
    pub(crate) fn dev_port(self) -> u16 {
        match self {
            Self::Identity => 50051,
            Self::FlagRegistry => 50052,
            Self::Attendance => 50053,
            Self::Notification => 50054,
            Self::Audit => 50055,
        }
    }

    /// The plaintext admin port (metrics, probes) under `cpis dev`.
    pub(crate) fn dev_admin_port(self) -> u16 {
        self.dev_port() - 50051 + 9501
    }
}

/// How to reach a running mesh (flattened into every command that calls one).
#[derive(Debug, Clone, Args)]
pub(crate) struct Remote {
    /// The data directory of `cpis dev` and `cpis login`.
    #[arg(long, env = "CPIS_DATA_DIR", default_value = ".cpis")]
    pub(crate) data_dir: PathBuf,
    /// One address for every service, such as the Envoy edge
    /// (https://cpis.example.org:8443); without it, each service at its `cpis dev` port.
    #[arg(long, env = "CPIS_ENDPOINT")]
    pub(crate) endpoint: Option<String>,
    /// A directory with this client system's `ca.crt`, `tls.crt` and `tls.key`; by default
    /// the one `cpis login` signed in through.
    #[arg(long, env = "CPIS_TLS_DIR")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// The SPIFFE trust domain of the mesh.
    #[arg(long, env = "CPIS_TRUST_DOMAIN", default_value = "cpis.local")]
    pub(crate) trust_domain: String,
    /// A session token; by default the one `cpis login` stored.
    #[arg(long, env = "CPIS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Bound on each call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

/// What `cpis login` keeps between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The session token.
    pub(crate) token: String,
    /// When it expires (RFC 3339).
    pub(crate) expires: String,
    /// Who signed in.
    pub(crate) username: String,
    /// The organisation the session acts for.
    pub(crate) organisation: String,
    /// The client system's certificate directory used to sign in.
    pub(crate) tls_dir: PathBuf,
}

impl Session {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("session.json")
    }

    /// The stored session, if any.
    pub(crate) fn load(data_dir: &Path) -> Result<Option<Self>, Failure> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Failure::usage(format!(
                    "{}: not a session file ({e}); run `cpis login` again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::io(&path, e)),
        }
    }

    /// Stores the session, readable by its owner only.
    pub(crate) fn save(&self, data_dir: &Path) -> Result<PathBuf, Failure> {
        let path = Self::path(data_dir);
        std::fs::create_dir_all(data_dir).map_err(|e| Failure::io(data_dir, e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| Failure::internal(e.to_string()))?;
        crate::files::write_private(&path, &json)?;
        Ok(path)
    }
}

impl Remote {
    /// The client system's certificate directory: the flag, else the session's, else an
    /// error saying what to do.
    pub(crate) fn tls_dir(&self) -> Result<PathBuf, Failure> {
        if let Some(dir) = &self.tls_dir {
            return Ok(dir.clone());
        }
        match Session::load(&self.data_dir)? {
            Some(session) => Ok(session.tls_dir),
            None => Err(Failure::unauthenticated(
                "no client certificate: pass --tls-dir (or CPIS_TLS_DIR), or run `cpis login`",
            )),
        }
    }

    /// The session token: the flag, else the stored session.
    pub(crate) fn token(&self) -> Result<String, Failure> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        match Session::load(&self.data_dir)? {
            Some(session) => Ok(session.token),
            None => Err(Failure::unauthenticated(
                "not signed in: run `cpis login` (or pass --token / CPIS_TOKEN)",
            )),
        }
    }

    /// The address of `service`.
    pub(crate) fn address(&self, service: Service) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://localhost:{}", service.dev_port()),
        }
    }

    /// A channel to `service`, presenting the client system's certificate from `tls_dir`.
    pub(crate) fn channel_with(
        &self,
        service: Service,
        tls_dir: &Path,
    ) -> Result<MeshChannel, Failure> {
        let files = TlsFiles {
            ca: tls_dir.join("ca.crt"),
            cert: tls_dir.join("tls.crt"),
            key: tls_dir.join("tls.key"),
        };
        let tls = MeshTls::load(files, &self.trust_domain).map_err(|e| {
            Failure::usage(format!(
                "client certificate in {}: {e}; pass --tls-dir with ca.crt, tls.crt and tls.key",
                tls_dir.display()
            ))
        })?;
        let settings = ChannelSettings {
            default_deadline: self.timeout,
            ..ChannelSettings::default()
        };
        let address = self.address(service);
        cpis_mesh::client::channel(&address, &tls, &Metrics::new(), &settings)
            .map_err(|e| Failure::usage(e.to_string()))
    }

    /// A channel to `service` with the configured or signed-in client system.
    pub(crate) fn channel(&self, service: Service) -> Result<MeshChannel, Failure> {
        let dir = self.tls_dir()?;
        self.channel_with(service, &dir)
    }

    /// `message` as a request carrying the session token.
    pub(crate) fn authorized<T>(&self, message: T) -> Result<Request<T>, Failure> {
        let token = self.token()?;
        let mut request = Request::new(message);
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Failure::usage("the token holds characters a header cannot carry"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// Parses `10s`, `500ms`, `2m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: write a duration such as 10s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "`{text}`: write a duration such as 10s, 500ms or 2m"
        )),
    }
}

/// A current-thread runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").unwrap_err().contains("10s"));
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn dev_ports_follow_the_table() {
        let ports: Vec<_> = Service::ALL.iter().map(|s| s.dev_port()).collect();
        assert_eq!(ports, [50051, 50052, 50053, 50054, 50055]);
        let admin: Vec<_> = Service::ALL.iter().map(|s| s.dev_admin_port()).collect();
        assert_eq!(admin, [9501, 9502, 9503, 9504, 9505]);
    }
}
