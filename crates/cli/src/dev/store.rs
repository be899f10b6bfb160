//! Where `cpis dev` keeps the services' data: SQLite files in the data directory (the
//! default), or one Postgres database per service (`--postgres`), with the flag registry's
//! cache in Redis (`--redis`). `store.json` in the data directory records the choice made on
//! the first run, so that a later run cannot mix one directory's keys with another store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::Connection;

use crate::failure::Failure;
use crate::remote::Service;

/// The prefix of the databases' names (undocumented override: tests use their own).
const PREFIX_VAR: &str = "CPIS_DEV_DATABASE_PREFIX";
const DEFAULT_PREFIX: &str = "cpis_dev_";

/// The store asked for on the command line.
#[derive(Debug, Clone)]
pub(super) struct StoreArgs {
    postgres: Option<Server>,
    redis: Option<String>,
}

/// A Postgres server: `scheme://authority` and its query string, without a database.
#[derive(Debug, Clone)]
struct Server {
    base: String,
    query: Option<String>,
    prefix: String,
}

impl Server {
    fn parse(url: &str, prefix: String) -> Result<Self, Failure> {
        let bad = |why: &str| {
            Failure::usage(format!(
                "--postgres {}: {why} (e.g. postgres://postgres@127.0.0.1:5432)",
                redact(url)
            ))
        };
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .ok_or_else(|| bad("not a postgres:// URL"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query.to_owned())),
            None => (rest, None),
        };
        // A database in the URL is ignored: each service gets its own.
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Failure::usage(format!(
                "{PREFIX_VAR}={prefix}: only lower-case letters, digits and `_`"
            )));
        }
        Ok(Self {
            base: format!("{scheme}://{authority}"),
            query,
            prefix,
        })
    }

    /// The URL of database `name` on this server.
    fn url(&self, name: &str) -> String {
        match &self.query {
            Some(query) => format!("{}/{name}?{query}", self.base),
            None => format!("{}/{name}", self.base),
        }
    }

    /// The name of `service`'s database.
    fn database(&self, service: Service) -> String {
        format!("{}{}", self.prefix, service.name().replace('-', "_"))
    }

    fn databases(&self) -> Vec<String> {
        Service::ALL.iter().map(|s| self.database(*s)).collect()
    }

    /// A connection to the server's `postgres` database, for creating and dropping.
    async fn admin(&self) -> Result<sqlx::PgConnection, Failure> {
        sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .map_err(|e| Failure::unavailable(format!("Postgres at {}: {e}", redact(&self.base))))
    }

    /// Those of the services' databases that exist.
    async fn existing(&self, admin: &mut sqlx::PgConnection) -> Result<Vec<String>, Failure> {
        sqlx::query_scalar::<_, String>(
            "SELECT datname FROM pg_database WHERE datname = ANY($1) ORDER BY datname",
        )
        .bind(self.databases())
        .fetch_all(admin)
        .await
        .map_err(|e| self.failed(e))
    }

    fn failed(&self, e: sqlx::Error) -> Failure {
        Failure::failed(format!("Postgres at {}: {e}", redact(&self.base)))
    }
}

/// `store.json`: what a data directory was created with (no passwords).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// `sqlite`, or the Postgres server's URL.
    database: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redis: Option<String>,
    /// Generated on the first run: a directory started over never reads another's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redis_key_prefix: Option<String>,
}

impl Record {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("store.json")
    }

    fn same_store(&self, other: &Self) -> bool {
        self.database == other.database
            && self.database_prefix == other.database_prefix
            && self.redis == other.redis
    }

    fn describe(&self) -> String {
        let database = match &self.database_prefix {
            Some(prefix) => format!("Postgres at {} ({prefix}* databases)", self.database),
            None => "SQLite".to_owned(),
        };
        match &self.redis {
            Some(redis) => format!("{database} and Redis at {redis}"),
            None => format!("{database} without Redis"),
        }
    }
}

/// The store of a running `cpis dev`.
#[derive(Debug, Clone)]
pub(super) struct Store {
    data_dir: PathBuf,
    postgres: Option<Server>,
    /// The URL (with its password) and the key prefix.
    redis: Option<(String, String)>,
}

impl StoreArgs {
    /// Checks the flags' URLs.
    pub(super) fn new(postgres: Option<&str>, redis: Option<&str>) -> Result<Self, Failure> {
        let prefix = std::env::var(PREFIX_VAR).unwrap_or_else(|_| DEFAULT_PREFIX.to_owned());
        let postgres = postgres.map(|url| Server::parse(url, prefix)).transpose()?;
        if let Some(url) = redis
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(Failure::usage(format!(
                "--redis {}: not a redis:// URL (e.g. redis://127.0.0.1:6379)",
                redact(url)
            )));
        }
        Ok(Self {
            postgres,
            redis: redis.map(str::to_owned),
        })
    }

    fn record(&self) -> Record {
        Record {
            database: self
                .postgres
                .as_ref()
                .map_or_else(|| "sqlite".to_owned(), |s| redact(&s.base)),
            database_prefix: self.postgres.as_ref().map(|s| s.prefix.clone()),
            redis: self.redis.as_deref().map(redact),
            redis_key_prefix: None,
        }
    }

    /// `--reset`: drops the services' Postgres databases, if any.
    pub(super) async fn drop_databases(&self) -> Result<(), Failure> {
        let Some(server) = &self.postgres else {
            return Ok(());
        };
        let mut admin = server.admin().await?;
        for name in server.databases() {
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .map_err(|e| server.failed(e))?;
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// Checks that `data_dir` was created with this store, or records it there on the first
    /// run, and creates the Postgres databases that are absent.
    pub(super) async fn open(self, data_dir: &Path) -> Result<Store, Failure> {
        let path = Record::path(data_dir);
        let mut wanted = self.record();
        let on_file = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Record>(&bytes).map_err(|e| {
                Failure::usage(format!(
                    "{}: {e}; use another --data-dir or --reset",
                    path.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Failure::io(&path, e)),
        };
        // A directory of an earlier `cpis dev`, from before store.json, is on SQLite.
        let earlier = ["secrets.json", "demo.json", "identity.db"]
            .iter()
            .any(|f| data_dir.join(f).exists());
        let recorded = on_file.clone().or_else(|| {
            earlier.then(|| Record {
                database: "sqlite".to_owned(),
                database_prefix: None,
                redis: None,
                redis_key_prefix: None,
            })
        });
        if let Some(recorded) = &recorded
            && !recorded.same_store(&wanted)
        {
            return Err(Failure::usage(format!(
                "this data directory ({}) was created with {}, not {}; use another \
                 --data-dir or --reset",
                data_dir.display(),
                recorded.describe(),
                wanted.describe()
            )));
        }

        if let Some(server) = &self.postgres {
            let mut admin = server.admin().await?;
            let existing = server.existing(&mut admin).await?;
            if recorded.is_none() && !existing.is_empty() {
                let _ = admin.close().await;
                return Err(Failure::usage(format!(
                    "Postgres at {} already has {}, not made for this new data directory \
                     ({}); use the data directory that made them, or --reset to drop them",
                    redact(&server.base),
                    existing.join(", "),
                    data_dir.display()
                )));
            }
            for name in server.databases() {
                if !existing.contains(&name) {
                    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                        .execute(&mut admin)
                        .await
                        .map_err(|e| server.failed(e))?;
                }
            }
            let _ = admin.close().await;
        }

        let record = match on_file {
            Some(record) => record,
            None => {
                if wanted.redis.is_some() {
                    let tag = super::random_hex()?;
                    wanted.redis_key_prefix = Some(format!("cpis:dev:{}:flags:", &tag[..12]));
                }
                let json = serde_json::to_vec_pretty(&wanted)
                    .map_err(|e| Failure::internal(e.to_string()))?;
                std::fs::write(&path, json).map_err(|e| Failure::io(&path, e))?;
                wanted
            }
        };
        let redis = self.redis.map(|url| {
            let prefix = record
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| "cpis:dev:flags:".to_owned());
            (url, prefix)
        });
        Ok(Store {
            data_dir: data_dir.to_owned(),
            postgres: self.postgres,
            redis,
        })
    }
}

impl Store {
    /// The database URL of `service`.
    pub(super) fn database_url(&self, service: Service) -> String {
        match &self.postgres {
            Some(server) => server.url(&server.database(service)),
            None => format!(
                "sqlite:{}",
                self.data_dir
                    .join(format!("{}.db", service.name()))
                    .display()
            ),
        }
    }

    /// The flag registry's Redis URL and key prefix, with `--redis`.
    pub(super) fn redis(&self) -> Option<(&str, &str)> {
        self.redis.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// One line for the announcement, when not on SQLite alone.
    pub(super) fn describe(&self) -> Option<String> {
        let database = self
            .postgres
            .as_ref()
            .map(|s| format!("Postgres at {} ({}*)", redact(&s.base), s.prefix));
        let redis = self
            .redis
            .as_ref()
            .map(|(url, _)| format!("the flag registry's cache in Redis at {}", redact(url)));
        match (database, redis) {
            (None, None) => None,
            (Some(d), None) => Some(format!("databases: {d}")),
            (None, Some(r)) => Some(format!("databases: SQLite; {r}")),
            (Some(d), Some(r)) => Some(format!("databases: {d}; {r}")),
        }
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if user.is_empty() {
                format!("{scheme}://{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_removed_and_databases_named_per_service() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app@db:5432/x?sslmode=require"
        );
        assert_eq!(redact("redis://:pw@cache:6379"), "redis://cache:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let server = Server::parse(
            "postgresql://app:pw@db:5432/postgres?sslmode=disable",
            "cpis_dev_".to_owned(),
        )
        .expect("a URL");
        assert_eq!(
            server.url(&server.database(Service::FlagRegistry)),
            "postgresql://app:pw@db:5432/cpis_dev_flag_registry?sslmode=disable"
        );
        assert!(Server::parse("mysql://db", "cpis_dev_".to_owned()).is_err());
        assert!(Server::parse("postgres://db", "Bad-Prefix".to_owned()).is_err());
    }
}
