//! `cpis dev`: the whole mesh in one process on one machine, with mTLS exactly as deployed,
//! SQLite databases (or, with `--postgres` and `--redis`, a Postgres database per service and
//! the flag registry's cache in Redis) and a demo, kept across restarts in a data directory.
//!
//! The first run creates, under the data directory (`.cpis` by default):
//! - `pki/`: a CA, a certificate per workload and client certificates for the demo's
//!   organisation systems (`pki/org-<ODS>-<system>/`);
//! - `secrets.json`: the NHS-number pseudonym key, identity's key-encryption key and the
//!   audit log's checkpoint key (owner-readable only);
//! - `store.json`: the store the directory was created with (see [`store`]);
//! - `<service>.db`: one SQLite database per service (without `--postgres`);
//! - the demo: its directory and person register (imported into identity before start),
//!   flags of each kind (uploaded through the flag registry's RPCs once the mesh is up), and
//!   `demo.json` describing it, written last: a run that stops before it starts over.

pub(crate) mod demo;
mod store;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use cpis_mesh::config::{LogFormat, TelemetrySection};
use cpis_mesh::devpki::DevCa;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::server::BoxError;
use cpis_mesh::{ConfigSource, MeshContext, MeshService, RunningServer, Shutdown};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::output::Output;
use crate::remote::Service;
use demo::Demo;
use store::{Store, StoreArgs};

/// `cpis dev`
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// The data directory: PKI, databases, demo (kept across restarts).
    #[arg(long, env = "CPIS_DATA_DIR", default_value = ".cpis")]
    data_dir: PathBuf,
    /// Delete the data directory first and start from a fresh demo.
    #[arg(long)]
    reset: bool,
    /// Which logs to show on standard error (a `tracing` filter such as `info`).
    #[arg(long, default_value = "warn")]
    log: String,
    /// A Postgres server (e.g. postgres://postgres@127.0.0.1:5432): each service gets its own
    /// database there, `cpis_dev_<service>`, instead of an SQLite file.
    #[arg(long, env = "CPIS_DEV_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// A Redis server (e.g. redis://127.0.0.1:6379) for the flag registry's cache.
    #[arg(long, env = "CPIS_DEV_REDIS", value_name = "URL")]
    redis: Option<String>,
}

const TRUST_DOMAIN: &str = "cpis.local";
const NAMESPACE: &str = "cpis";

/// Runs `cpis dev` until Ctrl-C.
pub(crate) fn run(args: DevArgs, output: Output) -> Result<(), Failure> {
    let store = StoreArgs::new(args.postgres.as_deref(), args.redis.as_deref())?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // Two workers, unless tokio's own TOKIO_WORKER_THREADS says otherwise.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(2);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(e.to_string()))?;
    runtime.block_on(async {
        if args.reset {
            store.drop_databases().await?;
            match std::fs::remove_dir_all(&args.data_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Failure::io(&args.data_dir, e)),
            }
        }
        std::fs::create_dir_all(&args.data_dir).map_err(|e| Failure::io(&args.data_dir, e))?;
        let data_dir = args
            .data_dir
            .canonicalize()
            .map_err(|e| Failure::io(&args.data_dir, e))?;
        let store = store.open(&data_dir).await?;
        serve(&data_dir, &store, &args.log, output).await
    })
}

/// Keys `cpis dev` generates once and keeps in `secrets.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Secrets {
    nhs_hash_key: String,
    identity_key_encryption_key: String,
    audit_checkpoint_key: String,
}

impl Secrets {
    fn ensure(data_dir: &Path) -> Result<Self, Failure> {
        let path = data_dir.join("secrets.json");
        if let Ok(bytes) = std::fs::read(&path) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::usage(format!(
                    "{}: {e}; delete the data directory or run `cpis dev --reset`",
                    path.display()
                ))
            });
        }
        let secrets = Self {
            nhs_hash_key: random_hex()?,
            identity_key_encryption_key: random_hex()?,
            audit_checkpoint_key: random_hex()?,
        };
        let json =
            serde_json::to_vec_pretty(&secrets).map_err(|e| Failure::internal(e.to_string()))?;
        crate::files::write_private(&path, &json)?;
        Ok(secrets)
    }

    fn audit_vkey(&self) -> Result<String, Failure> {
        let seed = cpis_mesh::nhs_hash::decode_hex(&self.audit_checkpoint_key)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                Failure::usage("secrets.json: audit_checkpoint_key is not 64 hex digits")
            })?;
        let signer = cpis_merkle::CheckpointSigner::from_ed25519_seed(AUDIT_ORIGIN, &seed)
            .map_err(|e| Failure::internal(e.to_string()))?;
        Ok(signer.verifier().vkey())
    }
}

/// The audit log's origin (and checkpoint key name) under `cpis dev`.
const AUDIT_ORIGIN: &str = "cpis.local/audit";

fn random_hex() -> Result<String, Failure> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Failure::internal("no randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the PKI on the first run.
fn ensure_pki(pki: &Path) -> Result<(), Failure> {
    if pki.join("ca.crt").exists() {
        return Ok(());
    }
    let ca = DevCa::new(TRUST_DOMAIN).map_err(|e| Failure::internal(e.to_string()))?;
    for workload in crate::pki::WORKLOADS {
        let leaf = ca
            .workload(NAMESPACE, workload)
            .map_err(|e| Failure::internal(e.to_string()))?;
        ca.write_bundle(&pki.join(workload), &leaf)
            .map_err(|e| Failure::internal(e.to_string()))?;
    }
    for (key, ods, system) in demo::SYSTEMS {
        let leaf = ca
            .org_system(ods, system)
            .map_err(|e| Failure::internal(e.to_string()))?;
        ca.write_bundle(&pki.join(format!("org-{key}")), &leaf)
            .map_err(|e| Failure::internal(e.to_string()))?;
    }
    // `cpis pki issue --dir <data-dir>/pki` adds bundles with this CA.
    crate::files::write_private(&pki.join("ca.key"), ca.key_pem().as_bytes())?;
    // Written last: its presence means the whole PKI is there.
    std::fs::write(pki.join("ca.crt"), ca.cert_pem()).map_err(|e| Failure::io(pki, e))
}

/// The configuration variables of one service under `cpis dev`.
fn variables(
    data_dir: &Path,
    store: &Store,
    secrets: &Secrets,
    service: Service,
    section: &str,
) -> Vec<(String, String)> {
    let tls = data_dir.join("pki").join(service.name());
    let section = section.to_ascii_uppercase();
    let mut vars = [
        ("CPIS_TLS_CA_FILE", tls.join("ca.crt")),
        ("CPIS_TLS_CERT_FILE", tls.join("tls.crt")),
        ("CPIS_TLS_KEY_FILE", tls.join("tls.key")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.display().to_string()))
    .collect::<Vec<_>>();
    vars.push((
        format!("CPIS_{section}_DATABASE_URL"),
        store.database_url(service),
    ));
    vars.push((
        "CPIS_PRIVACY_NHS_HASH_KEY".to_owned(),
        secrets.nhs_hash_key.clone(),
    ));
    vars.push((
        "CPIS_SERVER_LISTEN".to_owned(),
        loopback(service.dev_port()).to_string(),
    ));
    vars.push((
        "CPIS_SERVER_ADMIN_LISTEN".to_owned(),
        loopback(service.dev_admin_port()).to_string(),
    ));
    match service {
        Service::Identity => vars.push((
            "CPIS_IDENTITY_KEY_ENCRYPTION_KEY".to_owned(),
            secrets.identity_key_encryption_key.clone(),
        )),
        Service::Audit => {
            vars.push((
                "CPIS_AUDIT_CHECKPOINT_KEY".to_owned(),
                secrets.audit_checkpoint_key.clone(),
            ));
            vars.push(("CPIS_AUDIT_ORIGIN".to_owned(), AUDIT_ORIGIN.to_owned()));
        }
        Service::FlagRegistry => {
            if let Some((url, prefix)) = store.redis() {
                vars.push((format!("CPIS_{section}_REDIS_URL"), url.to_owned()));
                vars.push((
                    format!("CPIS_{section}_REDIS_KEY_PREFIX"),
                    prefix.to_owned(),
                ));
            }
        }
        _ => {}
    }
    vars
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Starts service `S` with `vars` on the shared shutdown.
async fn start<S: MeshService>(
    vars: Vec<(String, String)>,
    shutdown: &Shutdown,
) -> Result<RunningServer, BoxError> {
    let mut source = ConfigSource::empty();
    for (name, value) in vars {
        source = source.with_var(name, value);
    }
    let config = source.load::<S::Section>(&S::DEFAULTS)?;
    let ctx = MeshContext::new(config.mesh.clone(), Metrics::new(), shutdown.clone())?;
    let parts = S::build(ctx.clone(), config).await?;
    Ok(cpis_mesh::start(&ctx, parts).await?)
}

async fn serve(data_dir: &Path, store: &Store, log: &str, output: Output) -> Result<(), Failure> {
    let pki = data_dir.join("pki");
    ensure_pki(&pki)?;
    let secrets = Secrets::ensure(data_dir)?;
    let telemetry = cpis_mesh::telemetry::init(
        "cpis-dev",
        &TelemetrySection {
            log_format: LogFormat::Pretty,
            log_filter: log.to_owned(),
        },
    )
    .map_err(|e| Failure::usage(format!("--log: {e}")))?;

    let existing = Demo::load(data_dir);
    if existing.is_none() {
        output.line("first run: creating the demo directory and person register");
        seed::identity(&store.database_url(Service::Identity)).await?;
    }

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let started = start_all(data_dir, store, &secrets, &shutdown).await;
    let servers = match started {
        Ok(servers) => servers,
        Err(failure) => {
            shutdown.trigger();
            telemetry.shutdown();
            return Err(failure);
        }
    };

    let demo = match existing {
        Some(demo) => demo,
        None => {
            output.line("first run: uploading the demo's flags");
            let demo = seed::mesh(data_dir, &secrets.audit_vkey()?).await;
            match demo {
                Ok(demo) => {
                    let json = serde_json::to_vec_pretty(&demo)
                        .map_err(|e| Failure::internal(e.to_string()))?;
                    std::fs::write(Demo::path(data_dir), json)
                        .map_err(|e| Failure::io(&Demo::path(data_dir), e))?;
                    demo
                }
                Err(failure) => {
                    shutdown.trigger();
                    for server in servers {
                        let _ = server.wait().await;
                    }
                    telemetry.shutdown();
                    return Err(failure);
                }
            }
        }
    };
    announce(data_dir, store, &demo, output);

    let mut failed = None;
    for server in servers {
        if let Err(e) = server.wait().await {
            failed.get_or_insert(e.to_string());
        }
    }
    telemetry.shutdown();
    output.line("cpis dev: stopped");
    match failed {
        Some(message) => Err(Failure::internal(message)),
        None => Ok(()),
    }
}

async fn start_all(
    data_dir: &Path,
    store: &Store,
    secrets: &Secrets,
    shutdown: &Shutdown,
) -> Result<Vec<RunningServer>, Failure> {
    use cpis_mesh::ServiceSection;
    let failure = |service: Service| {
        move |e: BoxError| {
            Failure::failed(format!(
                "{} could not start: {e} (is another `cpis dev` running? ports {} and {} must be free)",
                service.name(),
                service.dev_port(),
                service.dev_admin_port()
            ))
        }
    };
    let vars =
        |service: Service, section: &str| variables(data_dir, store, secrets, service, section);
    // Audit and notification first: the others ship events to them from the start.
    Ok(vec![
        start::<cpis_audit::Audit>(
            vars(Service::Audit, cpis_audit::AuditSection::NAME),
            shutdown,
        )
        .await
        .map_err(failure(Service::Audit))?,
        start::<cpis_notification::Notification>(
            vars(
                Service::Notification,
                cpis_notification::NotificationSection::NAME,
            ),
            shutdown,
        )
        .await
        .map_err(failure(Service::Notification))?,
        start::<cpis_identity::Identity>(
            vars(Service::Identity, cpis_identity::IdentitySection::NAME),
            shutdown,
        )
        .await
        .map_err(failure(Service::Identity))?,
        start::<cpis_flag_registry::FlagRegistry>(
            vars(
                Service::FlagRegistry,
                cpis_flag_registry::FlagsSection::NAME,
            ),
            shutdown,
        )
        .await
        .map_err(failure(Service::FlagRegistry))?,
        start::<cpis_attendance::Attendance>(
            vars(
                Service::Attendance,
                cpis_attendance::AttendanceSection::NAME,
            ),
            shutdown,
        )
        .await
        .map_err(failure(Service::Attendance))?,
    ])
}

fn announce(data_dir: &Path, store: &Store, demo: &Demo, output: Output) {
    if output.json {
        if let Ok(value) = serde_json::to_value(demo) {
            output.json(&value);
        }
        return;
    }
    let me = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            std::env::current_dir()
                .ok()
                .and_then(|cwd| exe.strip_prefix(cwd).ok().map(|p| p.to_path_buf()))
                .or(Some(exe))
        })
        .map_or_else(|| "cpis".to_owned(), |p| p.display().to_string());
    let mut lines = vec!["CP-IS mesh is running (mTLS on loopback; Ctrl-C stops it):".to_owned()];
    for service in Service::ALL {
        lines.push(format!(
            "  {:<13} https://localhost:{}   metrics http://127.0.0.1:{}/metrics",
            service.name(),
            service.dev_port(),
            service.dev_admin_port()
        ));
    }
    let flagged = demo
        .nhs_numbers
        .get("cpp")
        .and_then(|n| n.first())
        .cloned()
        .unwrap_or_default();
    let unflagged = demo
        .nhs_numbers
        .get("unflagged")
        .and_then(|n| n.first())
        .cloned()
        .unwrap_or_default();
    lines.push(format!(
        "data: {} (demo users, certificates and NHS numbers in demo.json)",
        data_dir.display()
    ));
    if let Some(store) = store.describe() {
        lines.push(store);
    }
    lines.push(String::new());
    lines.push("Try, in another terminal:".to_owned());
    let default_dir = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.join(".cpis").canonicalize().ok());
    if default_dir.as_deref() != Some(data_dir) {
        lines.push(format!("  export CPIS_DATA_DIR={}", data_dir.display()));
    }
    let tries = [
        (
            format!("{me} login ed.clinician"),
            "a clinician at St Thomas' ED (RJ1)",
        ),
        (
            format!("{me} check {flagged} --setting RJ1"),
            "a child on a child protection plan",
        ),
        (
            format!("{me} audit verify"),
            "the signed, append-only audit log",
        ),
    ];
    let width = tries.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, what) in tries {
        lines.push(format!("  {command:<width$}   # {what}"));
    }
    lines.push(format!(
        "Then: `{me} check {unflagged} --setting RJ1` (no flag), `{me} login camden.social` and \
         `{me} notifications watch`."
    ));
    for line in lines {
        output.line(&line);
    }
}

/// Where the demo's client system `key` keeps its certificate.
pub(crate) fn system_dir(data_dir: &Path, key: &str) -> PathBuf {
    data_dir.join("pki").join(format!("org-{key}"))
}

/// The addresses `demo.json` lists.
fn addresses() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let services = Service::ALL
        .iter()
        .map(|s| {
            (
                s.name().to_owned(),
                format!("https://localhost:{}", s.dev_port()),
            )
        })
        .collect();
    let admin = Service::ALL
        .iter()
        .map(|s| {
            (
                s.name().to_owned(),
                format!("http://127.0.0.1:{}", s.dev_admin_port()),
            )
        })
        .collect();
    (services, admin)
}

mod seed;

/// How long the first run waits for the mesh to answer its demo uploads.
const SEED_PATIENCE: Duration = Duration::from_secs(30);
