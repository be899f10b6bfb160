//! `cpis pki`: a development PKI on disk.

use std::path::Path;

use cpis_mesh::devpki::DevCa;

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
        let (ods, system) = spec
            .split_once('/')
            .ok_or_else(|| format!("`{spec}`: write an organisation system as ODS/SYSTEM"))?;
        let ods = ods
            .parse::<cpis_domain::OdsCode>()
            .map_err(|e| format!("`{spec}`: {e}"))?;
        cpis_mesh::identity::validate_label(system).map_err(|e| format!("`{spec}`: {e}"))?;
        let leaf = ca
            .org_system(ods.as_str(), system)
            .map_err(|e| e.to_string())?;
        ca.write_bundle(&out.join(format!("org-{}-{system}", ods.as_str())), &leaf)
            .map_err(|e| e.to_string())?;
    }
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
