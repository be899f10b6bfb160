//! `cpis identity ...`: the identity database administered directly, through the identity
//! crate's library (the first directory import cannot need a token, since no one can sign
//! in before it). Every change is audited through identity's outbox, actor `cpis-cli`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use cpis_identity::IdentitySection;
use cpis_identity::audit::AuditActor;
use cpis_identity::config::{DATABASE_URL_VAR, DEFAULT_DATABASE_URL};
use cpis_identity::credential::CredentialHasher;
use cpis_identity::directory::import::{export_directory, import_directory};
use cpis_identity::persons::{self, CSV_HEADER, PersonCounts};
use cpis_identity::store::IdentityStore;

/// Persons written per transaction.
const BATCH: usize = 5_000;
/// The actor of the tool's audit events.
const ACTOR: &str = "cpis-cli";

/// `cpis identity`.
#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    /// The identity database: `sqlite:path` or `postgres://...`.
    #[arg(long, global = true, env = DATABASE_URL_VAR, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Import a directory file (YAML, see docs/directory-format.md). Idempotent: a second
    /// import of the same file changes nothing.
    Import {
        /// The directory file.
        file: PathBuf,
        /// Only check the file and say what an import would do.
        #[arg(long)]
        validate_only: bool,
    },
    /// Export the whole directory as a directory file (credentials as argon2id hashes).
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add synthetic persons (valid NHS numbers of the 999 test range) to the register.
    /// The same numbers always get the same persons, so seeding twice changes nothing.
    SeedPersons {
        /// How many persons.
        #[arg(long)]
        count: u64,
        /// Skip this many synthetic persons first (to add more to an earlier seed).
        #[arg(long, default_value_t = 0)]
        start: u64,
    },
    /// Import persons from a CSV file with the header
    /// `nhs_number,date_of_birth,status,superseded_by,sensitive`. The whole file is checked
    /// before anything is written.
    ImportPersons {
        /// The CSV file.
        file: PathBuf,
    },
}

/// Runs a `cpis identity` command.
pub(crate) fn run(args: IdentityArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let store = cpis_identity::store::open(&args.database_url)
            .await
            .map_err(|e| format!("{}: {e}", args.database_url))?;
        let result = match args.command {
            IdentityCommand::Import {
                file,
                validate_only,
            } => import(store.as_ref(), &file, validate_only).await,
            IdentityCommand::Export { out } => export(store.as_ref(), out.as_deref()).await,
            IdentityCommand::SeedPersons { count, start } => {
                seed(store.as_ref(), start, count).await
            }
            IdentityCommand::ImportPersons { file } => import_csv(store.as_ref(), &file).await,
        };
        store.database().close().await;
        result
    })
}

async fn import(store: &dyn IdentityStore, file: &Path, validate_only: bool) -> Result<(), String> {
    let yaml = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let hasher = CredentialHasher::new().map_err(|e| e.to_string())?;
    let counts = import_directory(
        store,
        &hasher,
        IdentitySection::default().min_credential_length,
        &yaml,
        validate_only,
        &AuditActor::tool(ACTOR),
    )
    .await
    .map_err(|e| match e {
        cpis_identity::IdentityError::Invalid(violations) => format!(
            "{}: {}",
            file.display(),
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.to_string(),
    })?;
    let verb = if validate_only {
        "would import"
    } else {
        "imported"
    };
    crate::say(&format!(
        "directory {verb}: {} created, {} updated, {} unchanged",
        counts.created, counts.updated, counts.unchanged
    ));
    Ok(())
}

async fn export(store: &dyn IdentityStore, out: Option<&Path>) -> Result<(), String> {
    let yaml = export_directory(store).await.map_err(|e| e.to_string())?;
    match out {
        Some(path) => std::fs::write(path, yaml).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .map_err(|e| e.to_string())
        }
    }
}

async fn seed(store: &dyn IdentityStore, start: u64, count: u64) -> Result<(), String> {
    let actor = AuditActor::tool(ACTOR);
    let mut total = PersonCounts::default();
    let mut done = 0;
    while done < count {
        let size = (count - done).min(BATCH as u64);
        let batch = persons::synthetic(start + done, size)
            .ok_or("the synthetic range (999 numbers) holds about 909,000 persons")?;
        total += persons::import(store, &actor, &batch)
            .await
            .map_err(|e| e.to_string())?;
        done += size;
    }
    report("seeded", total);
    Ok(())
}

async fn import_csv(store: &dyn IdentityStore, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut register = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (index == 0 && line.replace(' ', "") == CSV_HEADER) {
            continue;
        }
        let person = persons::parse_csv_line(line)
            .map_err(|e| format!("{} line {}: {e}", file.display(), index + 1))?;
        register.push(person);
    }
    let actor = AuditActor::tool(ACTOR);
    let mut total = PersonCounts::default();
    for batch in register.chunks(BATCH) {
        total += persons::import(store, &actor, batch)
            .await
            .map_err(|e| e.to_string())?;
    }
    report("imported", total);
    Ok(())
}

fn report(verb: &str, counts: PersonCounts) {
    crate::say(&format!(
        "persons {verb}: {} created, {} updated, {} unchanged",
        counts.created, counts.updated, counts.unchanged
    ));
}
