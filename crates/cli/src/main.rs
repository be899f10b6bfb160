//! The `cpis` command: run the mesh on one machine, administer and verify it.
//!
//! Subcommands arrive with the issues that need them; today:
//! - `cpis pki`: a development PKI (a CA, a certificate per service, client certificates for
//!   organisation systems) in a directory, to run the services by hand;
//! - `cpis nhs-number`: checks NHS numbers (Modulus 11) and prints them in 3-3-4 form;
//! - `cpis identity`: directory import and export, the person register (on the identity
//!   database directly, so the first import needs no token);
//! - `cpis audit`: verify the audit log's signed checkpoints, consistency and every event,
//!   prove one event's inclusion, generate a checkpoint key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod identity;
mod pki;

/// CP-IS mesh: child-protection information sharing.
#[derive(Debug, Parser)]
#[command(name = "cpis", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a development PKI: a CA and a certificate per service and organisation system.
    Pki {
        /// Directory to write into (one sub-directory per identity, as `ca.crt`, `tls.crt`,
        /// `tls.key`).
        #[arg(long, default_value = ".cpis/pki")]
        out: PathBuf,
        /// SPIFFE trust domain.
        #[arg(long, default_value = "cpis.local")]
        trust_domain: String,
        /// Kubernetes namespace of the services.
        #[arg(long, default_value = "cpis")]
        namespace: String,
        /// Organisation systems to issue client certificates for, as ODS/SYSTEM.
        #[arg(long = "org-system", value_name = "ODS/SYSTEM")]
        org_systems: Vec<String>,
    },
    /// Check NHS numbers: prints each valid one in 3-3-4 form, or why it is invalid.
    NhsNumber {
        /// Numbers to check (spaces and dashes allowed).
        #[arg(required = true)]
        numbers: Vec<String>,
    },
    /// Check the audit log from outside: signed checkpoints, consistency, inclusion proofs.
    Audit(audit::AuditArgs),
    /// Administer the identity database: directory import and export, the person register.
    Identity(identity::IdentityArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pki {
            out,
            trust_domain,
            namespace,
            org_systems,
        } => pki::create(&out, &trust_domain, &namespace, &org_systems),
        Command::NhsNumber { numbers } => check_numbers(&numbers),
        Command::Identity(args) => identity::run(args),
        Command::Audit(args) => audit::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cpis: {message}");
            ExitCode::FAILURE
        }
    }
}

fn check_numbers(numbers: &[String]) -> Result<(), String> {
    let mut invalid = 0;
    for input in numbers {
        match input.parse::<cpis_domain::NhsNumber>() {
            Ok(number) => {
                let synthetic = if number.is_synthetic() {
                    " (synthetic test range)"
                } else {
                    ""
                };
                say(&format!("{number}: valid{synthetic}"));
            }
            Err(error) => {
                invalid += 1;
                say(&format!("{input}: invalid: {error}"));
            }
        }
    }
    if invalid == 0 {
        Ok(())
    } else {
        Err(format!(
            "{invalid} of {} numbers are invalid",
            numbers.len()
        ))
    }
}

/// Writes one line of the command's answer to standard output.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
