//! The `cpis` command: run the mesh on one machine, administer and verify it.
//!
//! - `cpis dev`: the whole mesh in one process on one machine, with a demo;
//! - against a running mesh (`remote`): `login`, `check`, `flags`, `notifications`,
//!   `audit`, `bench`;
//! - `cpis pki`: a development PKI (a CA, a certificate per service, client certificates for
//!   organisation systems) in a directory, to run the services by hand;
//! - `cpis envoy render`: the Envoy edge's configuration;
//! - `cpis nhs-number`: checks NHS numbers (Modulus 11) and prints them in 3-3-4 form;
//! - `cpis identity`: directory import and export, the person register (on the identity
//!   database directly, so the first import needs no token).
//!
//! Output is text for people by default and JSON with `--json`; exit codes are listed in
//! [`failure`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod audit_query;
mod bench;
mod check;
mod dev;
mod envoy;
mod failure;
mod files;
mod flags;
mod identity;
mod login;
mod notifications;
mod output;
mod pki;
mod remote;
mod show;

use failure::Failure;
use output::Output;

cpis_mesh::global_allocator!();

/// CP-IS mesh: child-protection information sharing.
#[derive(Debug, Parser)]
#[command(name = "cpis", version, about, propagate_version = true)]
struct Cli {
    /// Answer with one JSON document instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole mesh on this machine with a demo (SQLite, mTLS, no Postgres or Redis).
    Dev(dev::DevArgs),
    /// A development PKI: `init` makes a CA and a certificate per workload, `issue` adds
    /// one for a workload or an organisation system.
    Pki(pki::PkiArgs),
    /// Render the Envoy edge's configuration for one machine or a Kubernetes namespace.
    Envoy(envoy::EnvoyArgs),
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
    /// Sign in as a user through a client system; later commands use the stored session.
    Login(login::LoginArgs),
    /// Check a child at a care setting: flags, whom to call, recent attendances.
    Check(check::CheckArgs),
    /// A local authority's inbox: list, acknowledge, watch live.
    Notifications(notifications::NotificationsArgs),
    /// Flags of a local authority: upload a CSV file, list, create or change, end.
    Flags(flags::FlagsArgs),
    /// Load generators against a running mesh, printing throughput and latency.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = Output { json: cli.json };
    let result: Result<(), Failure> = match cli.command {
        Command::Pki(args) => pki::run(args, output),
        Command::NhsNumber { numbers } => check_numbers(&numbers).map_err(Failure::from),
        Command::Identity(args) => identity::run(args).map_err(Failure::from),
        Command::Audit(args) => audit::run(args, output),
        Command::Dev(args) => dev::run(args, output),
        Command::Login(args) => login::run(args, output),
        Command::Check(args) => check::run(args, output),
        Command::Notifications(args) => notifications::run(args, output),
        Command::Envoy(args) => envoy::run(args, output),
        Command::Flags(args) => flags::run(args, output),
        Command::Bench(args) => bench::run(args, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cpis: {}", failure.message);
            failure.exit_code()
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
