//! The `cpis-audit` binary as a real process, configured as a deployment configures it.

use cpis_mesh::testkit::process::{assert_refuses_bad_configuration, assert_serves_and_stops};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_logs_in_json_with_trace_ids_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir.path(), "audit");
    assert_serves_and_stops(
        env!("CARGO_BIN_EXE_cpis-audit"),
        "audit",
        &[
            ("CPIS_AUDIT_DATABASE_URL", url),
            ("CPIS_AUDIT_CHECKPOINT_KEY", KEY.to_owned()),
        ],
    )
    .await;
}

#[test]
fn refuses_to_start_without_the_hash_key() {
    assert_refuses_bad_configuration(env!("CARGO_BIN_EXE_cpis-audit"));
}

#[test]
fn migrate_applies_the_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir.path(), "audit");
    let (status, stderr) =
        cpis_mesh::testkit::process::start_misconfigured(env!("CARGO_BIN_EXE_cpis-audit"), &[]);
    assert!(!status.success(), "{stderr}");
    let (status, stderr) = cpis_mesh::testkit::process::run(
        env!("CARGO_BIN_EXE_cpis-audit"),
        &["migrate"],
        &[
            ("CPIS_AUDIT_DATABASE_URL", &url),
            ("CPIS_AUDIT_CHECKPOINT_KEY", KEY),
            ("CPIS_PRIVACY_NHS_HASH_KEY", KEY),
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("migrations applied"));
    assert!(dir.path().join("audit.db").exists());
}
