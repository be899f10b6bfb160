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
        /// File keeping the last accepted checkpoint between runs.
        #[arg(long, default_value = ".cpis/audit-verify.checkpoint")]
        state: PathBuf,
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
    /// A directory with this client's `ca.crt`, `tls.crt` and `tls.key`.
    #[arg(long, env = "CPIS_TLS_DIR")]
    tls_dir: PathBuf,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cpis.local")]
    trust_domain: String,
    /// The checkpoint verifier key (`name+keyid+base64`).
    #[arg(long, env = "CPIS_AUDIT_VKEY")]
    vkey: String,
    /// A session token with audit.read, to read events.
    #[arg(long, env = "CPIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Connection {
    fn verifier(&self) -> Result<Verifier, String> {
        let key = NoteVerifier::from_vkey(&self.vkey).map_err(|e| format!("--vkey: {e}"))?;
        let files = TlsFiles {
            ca: self.tls_dir.join("ca.crt"),
            cert: self.tls_dir.join("tls.crt"),
            key: self.tls_dir.join("tls.key"),
        };
        let tls = MeshTls::load(files, &self.trust_domain).map_err(|e| e.to_string())?;
        let settings = ChannelSettings {
            default_deadline: std::time::Duration::from_secs(60),
            ..ChannelSettings::default()
        };
        let channel = cpis_mesh::client::channel(&self.address, &tls, &Metrics::new(), &settings)
            .map_err(|e| e.to_string())?;
        Ok(Verifier::new(channel, key, self.token.clone()))
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
pub(crate) fn run(args: AuditArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match args.command {
        AuditCommand::Keygen { name } => keygen(&name),
        AuditCommand::Verify {
            connection,
            state,
            full,
        } => runtime.block_on(async {
            let verifier = connection.verifier()?;
            let key = NoteVerifier::from_vkey(&connection.vkey).map_err(|e| e.to_string())?;
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
