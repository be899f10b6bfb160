//! `cpis pki init` and `cpis pki issue`: bundles that load as mesh TLS, the CA kept to
//! issue more, its key private.

use std::process::Command;

use cpis_mesh::tls::{MeshTls, TlsFiles};

fn cpis(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(args)
        .output()
        .expect("run cpis");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn load(dir: &std::path::Path) -> MeshTls {
    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    MeshTls::load(files, "cpis.local").expect("a bundle that loads")
}

#[test]
fn init_then_issue_adds_bundles_signed_by_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_arg = pki.to_str().unwrap();
    let (ok, out) = cpis(&["pki", "init", "--out", pki_arg]);
    assert!(ok, "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is its owner's only");
    }

    let (ok, out) = cpis(&[
        "pki",
        "issue",
        "--dir",
        pki_arg,
        "--org-system",
        "RAL/ed-ehr",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = cpis(&["pki", "issue", "--dir", pki_arg, "--workload", "reporting"]);
    assert!(ok, "{out}");
    assert_eq!(
        load(&pki.join("org-RAL-ed-ehr")).identity().to_string(),
        "spiffe://cpis.local/org/RAL/system/ed-ehr"
    );
    assert_eq!(
        load(&pki.join("reporting")).identity().to_string(),
        "spiffe://cpis.local/ns/cpis/sa/reporting"
    );
    // The new bundles trust the CA init made.
    assert_eq!(
        std::fs::read(pki.join("org-RAL-ed-ehr/ca.crt")).unwrap(),
        std::fs::read(pki.join("ca.crt")).unwrap()
    );

    let (ok, out) = cpis(&["pki", "issue", "--dir", pki_arg, "--org-system", "RAL"]);
    assert!(!ok);
    assert!(out.contains("ODS/SYSTEM"), "{out}");
    let empty = dir.path().join("none");
    let (ok, out) = cpis(&[
        "pki",
        "issue",
        "--dir",
        empty.to_str().unwrap(),
        "--workload",
        "x",
    ]);
    assert!(!ok);
    assert!(out.contains("cpis pki init"), "{out}");
}
