//! `cpis pki`: a development PKI on disk — `init` makes a CA (kept as `ca.crt` and
//! `ca.key`) and a bundle per workload, `issue` adds a bundle signed by that CA.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use cpis_mesh::devpki::DevCa;

use crate::failure::Failure;
use crate::output::Output;

/// `cpis pki ...`
#[derive(Debug, Args)]
pub(crate) struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a CA and a bundle (`ca.crt`, `tls.crt`, `tls.key`) per workload, and for the
    /// organisation systems named.
    Init {
        /// Directory to write into (one sub-directory per identity).
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
    /// Issue one more bundle with the CA `init` made: a workload's or an organisation
    /// system's.
    Issue {
        /// The PKI directory `init` wrote (its `ca.crt` and `ca.key` sign).
        #[arg(long, default_value = ".cpis/pki")]
        dir: PathBuf,
        /// SPIFFE trust domain (the CA's).
        #[arg(long, default_value = "cpis.local")]
        trust_domain: String,
        /// Kubernetes namespace, for a workload.
        #[arg(long, default_value = "cpis")]
        namespace: String,
        /// A workload's certificate (`spiffe://<td>/ns/<namespace>/sa/<NAME>`).
        #[arg(
            long,
            conflicts_with = "org_system",
            required_unless_present = "org_system"
        )]
        workload: Option<String>,
        /// An organisation system's client certificate, as ODS/SYSTEM.
        #[arg(long, value_name = "ODS/SYSTEM")]
        org_system: Option<String>,
    },
}

/// Runs `cpis pki ...`.
pub(crate) fn run(args: PkiArgs, output: Output) -> Result<(), Failure> {
    match args.command {
        PkiCommand::Init {
            out,
            trust_domain,
            namespace,
            org_systems,
        } => create(&out, &trust_domain, &namespace, &org_systems).map_err(Failure::from),
        PkiCommand::Issue {
            dir,
            trust_domain,
            namespace,
            workload,
            org_system,
        } => {
            let read = |name: &str| {
                let path = dir.join(name);
                std::fs::read_to_string(&path).map_err(|e| {
                    Failure::usage(format!(
                        "{}: {e}; run `cpis pki init --out {}` first",
                        path.display(),
                        dir.display()
                    ))
                })
            };
            let ca = DevCa::from_pem(&trust_domain, &read("ca.crt")?, &read("ca.key")?)
                .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
            let (name, leaf) = match (workload, org_system) {
                (Some(workload), _) => {
                    cpis_mesh::identity::validate_label(&workload).map_err(Failure::usage)?;
                    let leaf = ca
                        .workload(&namespace, &workload)
                        .map_err(|e| Failure::internal(e.to_string()))?;
                    (workload, leaf)
                }
                (None, Some(spec)) => {
                    let (ods, system) = org_system_of(&spec).map_err(Failure::usage)?;
                    let leaf = ca
                        .org_system(&ods, &system)
                        .map_err(|e| Failure::internal(e.to_string()))?;
                    (format!("org-{ods}-{system}"), leaf)
                }
                (None, None) => return Err(Failure::usage("pass --workload or --org-system")),
            };
            let target = dir.join(&name);
            ca.write_bundle(&target, &leaf)
                .map_err(|e| Failure::internal(e.to_string()))?;
            output.line(&format!("wrote {}", target.display()));
            Ok(())
        }
    }
}

/// `ODS/SYSTEM`, checked.
fn org_system_of(spec: &str) -> Result<(String, String), String> {
    let (ods, system) = spec
        .split_once('/')
        .ok_or_else(|| format!("`{spec}`: write an organisation system as ODS/SYSTEM"))?;
    let ods = ods
        .parse::<cpis_domain::OdsCode>()
        .map_err(|e| format!("`{spec}`: {e}"))?;
    cpis_mesh::identity::validate_label(system).map_err(|e| format!("`{spec}`: {e}"))?;
    Ok((ods.as_str().to_owned(), system.to_owned()))
}

/// The mesh's workloads: the five services and the edge.
pub(crate) const WORKLOADS: [&str; 6] = [
    "identity",
    "flag-registry",
    "attendance",
    "notification",
    "audit",
    "edge",
];

/// Writes a CA and a bundle per workload and organisation system under `out`.
pub(crate) fn create(
    out: &Path,
    trust_domain: &str,
    namespace: &str,
    org_systems: &[String],
) -> Result<(), String> {
    cpis_mesh::identity::validate_label(trust_domain)?;
    cpis_mesh::identity::validate_label(namespace)?;
    let ca = DevCa::new(trust_domain).map_err(|e| e.to_string())?;
    for workload in WORKLOADS {
        let leaf = ca
            .workload(namespace, workload)
            .map_err(|e| e.to_string())?;
        ca.write_bundle(&out.join(workload), &leaf)
            .map_err(|e| e.to_string())?;
    }
    for spec in org_systems {
        let (ods, system) = org_system_of(spec)?;
        let leaf = ca.org_system(&ods, &system).map_err(|e| e.to_string())?;
        ca.write_bundle(&out.join(format!("org-{ods}-{system}")), &leaf)
            .map_err(|e| e.to_string())?;
    }
    // The CA itself, so that `cpis pki issue` can add bundles later.
    std::fs::write(out.join("ca.crt"), ca.cert_pem())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    crate::files::write_private(&out.join("ca.key"), ca.key_pem().as_bytes())
        .map_err(|f| f.message)?;
    crate::say(&format!(
        "wrote a development PKI for {trust_domain} to {}",
        out.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundle_loads_as_mesh_tls() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), "cpis.local", "cpis", &["RJ1/ed-ehr".to_owned()]).unwrap();
        for name in WORKLOADS
            .iter()
            .map(|w| (*w).to_owned())
            .chain(["org-RJ1-ed-ehr".to_owned()])
        {
            let d = dir.path().join(&name);
            let files = cpis_mesh::tls::TlsFiles {
                ca: d.join("ca.crt"),
                cert: d.join("tls.crt"),
                key: d.join("tls.key"),
            };
            let tls = cpis_mesh::tls::MeshTls::load(files, "cpis.local").unwrap();
            assert!(
                tls.identity()
                    .to_string()
                    .starts_with("spiffe://cpis.local/"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_malformed_org_system_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = create(dir.path(), "cpis.local", "cpis", &["RJ1".to_owned()]).unwrap_err();
        assert!(err.contains("ODS/SYSTEM"), "{err}");
    }
}
