//! `cpis audit`: check the audit log from outside, trusting only its checkpoint key.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use cpis_audit::verify::{Accepted, Verifier};
use cpis_merkle::NoteVerifier;
use cpis_mesh::client::ChannelSettings;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::tls::{MeshTls, TlsFiles};

/// `cpis audit ...`
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the latest signed checkpoint and that it extends the last one accepted; with
    /// --full, fetch every event, hash it again and name the first index that fails.
    Verify {
        #[command(flatten)]
        connection: Connection,
        /// File keeping the last accepted checkpoint between runs (by default
        /// `audit-verify.checkpoint` in the data directory).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Recompute the tree from every event (needs --token with audit.read).
        #[arg(long)]
        full: bool,
    },
    /// Check one event's inclusion proof (by index or event id) against the latest signed
    /// checkpoint; with --token, the leaf is hashed from the event itself.
    Prove {
        /// The event's index or UUID.
        event: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Search the audit log (needs a user with audit.read): who looked at which child,
    /// when, from where. The query itself is audited.
    Query(crate::audit_query::QueryArgs),
    /// Generate a checkpoint signing key: prints the seed for `CPIS_AUDIT_CHECKPOINT_KEY`
    /// and the verifier key to give auditors.
    Keygen {
        /// The key's name (by convention, the log's origin).
        #[arg(long, default_value = "cpis.local/audit")]
        name: String,
    },
}

/// How to reach the audit service and whom to trust.
#[derive(Debug, Args)]
struct Connection {
    /// The audit service.
    #[arg(
        long,
        env = "CPIS_AUDIT_ADDRESS",
        default_value = "https://localhost:50055"
    )]
    address: String,
    /// A directory with this client's `ca.crt`, `tls.crt` and `tls.key`; by default the
    /// signed-in session's, or under `cpis dev` a demo hospital system's.
    #[arg(long, env = "CPIS_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// The data directory of `cpis dev` and `cpis login`.
    #[arg(long, env = "CPIS_DATA_DIR", default_value = ".cpis")]
    data_dir: PathBuf,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cpis.local")]
    trust_domain: String,
    /// The checkpoint verifier key (`name+keyid+base64`); under `cpis dev`, from demo.json.
    #[arg(long, env = "CPIS_AUDIT_VKEY")]
    vkey: Option<String>,
    /// A session token with audit.read, to read events.
    #[arg(long, env = "CPIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Connection {
    fn vkey(&self) -> Result<NoteVerifier, String> {
        let vkey = match &self.vkey {
            Some(vkey) => vkey.clone(),
            None => crate::dev::demo::Demo::load(&self.data_dir)
                .map(|demo| demo.audit_vkey)
                .ok_or("pass the log's verifier key with --vkey (or CPIS_AUDIT_VKEY)")?,
        };
        NoteVerifier::from_vkey(&vkey).map_err(|e| format!("--vkey: {e}"))
    }

    fn tls_dir(&self) -> Result<PathBuf, String> {
        if let Some(dir) = &self.tls_dir {
            return Ok(dir.clone());
        }
        if let Ok(Some(session)) = crate::remote::Session::load(&self.data_dir) {
            return Ok(session.tls_dir);
        }
        if crate::dev::demo::Demo::load(&self.data_dir).is_some() {
            let system = crate::dev::demo::system_of(crate::dev::demo::TRUST_A);
            return Ok(crate::dev::system_dir(&self.data_dir, system));
        }
        Err("pass --tls-dir with this client's ca.crt, tls.crt and tls.key".to_owned())
    }

    fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            crate::remote::Session::load(&self.data_dir)
                .ok()
                .flatten()
                .map(|s| s.token)
        })
    }

    fn verifier(&self) -> Result<Verifier, String> {
        let key = self.vkey()?;
        let tls_dir = self.tls_dir()?;
        let files = TlsFiles {
            ca: tls_dir.join("ca.crt"),
            cert: tls_dir.join("tls.crt"),
            key: tls_dir.join("tls.key"),
        };
        let tls = MeshTls::load(files, &self.trust_domain).map_err(|e| e.to_string())?;
        let settings = ChannelSettings {
            default_deadline: std::time::Duration::from_secs(60),
            ..ChannelSettings::default()
        };
        let channel = cpis_mesh::client::channel(&self.address, &tls, &Metrics::new(), &settings)
            .map_err(|e| e.to_string())?;
        Ok(Verifier::new(channel, key, self.token()))
    }
}

fn read_state(path: &Path, key: &NoteVerifier) -> Result<Option<Accepted>, String> {
    match std::fs::read_to_string(path) {
        Ok(note) => cpis_merkle::checkpoint::open(&note, key)
            .map(|checkpoint| {
                Some(Accepted {
                    signed_note: note,
                    checkpoint,
                })
            })
            .map_err(|e| {
                format!(
                    "{}: the saved checkpoint does not verify: {e}",
                    path.display()
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_state(path: &Path, accepted: &Accepted) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &accepted.signed_note)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `cpis audit ...`.
pub(crate) fn run(
    args: AuditArgs,
    output: crate::output::Output,
) -> Result<(), crate::failure::Failure> {
    match args.command {
        AuditCommand::Query(query) => crate::audit_query::run(query, output),
        command => check(command).map_err(crate::failure::Failure::failed),
    }
}

fn check(command: AuditCommand) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match command {
        AuditCommand::Query(_) => Ok(()),
        AuditCommand::Keygen { name } => keygen(&name),
        AuditCommand::Verify {
            connection,
            state,
            full,
        } => runtime.block_on(async {
            let verifier = connection.verifier()?;
            let key = connection.vkey()?;
            let state =
                state.unwrap_or_else(|| connection.data_dir.join("audit-verify.checkpoint"));
            let previous = read_state(&state, &key)?;
            let latest = verifier
                .latest(previous.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let size = latest.checkpoint.size();
            match &previous {
                Some(p) => crate::say(&format!(
                    "checkpoint of size {size} is signed and extends the accepted one of size {}",
                    p.checkpoint.size()
                )),
                None => crate::say(&format!(
                    "checkpoint of size {size} is signed (first run: nothing to compare with)"
                )),
            }
            if full {
                verifier
                    .full(&latest, previous.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                crate::say(&format!("all {size} events hash to the signed root"));
            }
            write_state(&state, &latest)?;
            crate::say(&format!("root {}", latest.checkpoint.root()));
            Ok(())
        }),
        AuditCommand::Prove { event, connection } => runtime.block_on(async {
            let verifier = connection.verifier()?;
            let (index, accepted) = verifier.prove(&event).await.map_err(|e| e.to_string())?;
            crate::say(&format!(
                "event index {index} is included in the signed tree of size {} (root {})",
                accepted.checkpoint.size(),
                accepted.checkpoint.root()
            ));
            Ok(())
        }),
    }
}

fn keygen(name: &str) -> Result<(), String> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "no randomness".to_owned())?;
    let signer =
        cpis_merkle::CheckpointSigner::from_ed25519_seed(name, &seed).map_err(|e| e.to_string())?;
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    crate::say(&format!("CPIS_AUDIT_CHECKPOINT_KEY={hex}"));
    crate::say(&format!("CPIS_AUDIT_VKEY={}", signer.verifier().vkey()));
    Ok(())
}
