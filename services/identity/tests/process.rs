//! The `cpis-identity` binary as a real process, configured as a deployment configures it.

use cpis_mesh::testkit::process::{assert_refuses_bad_configuration, assert_serves_and_stops};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "CPIS_IDENTITY_DATABASE_URL",
            cpis_mesh::testkit::sqlite_database(dir, "identity"),
        ),
        ("CPIS_IDENTITY_KEY_ENCRYPTION_KEY", KEY.to_owned()),
        // No audit service in this test: no relay.
        ("CPIS_IDENTITY_AUDIT_ADDRESS", String::new()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_logs_in_json_with_trace_ids_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    assert_serves_and_stops(
        env!("CARGO_BIN_EXE_cpis-identity"),
        "identity",
        &env(dir.path()),
    )
    .await;
}

#[test]
fn refuses_to_start_without_the_hash_key() {
    assert_refuses_bad_configuration(env!("CARGO_BIN_EXE_cpis-identity"));
}

#[test]
fn migrate_applies_the_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, String)> = env(dir.path());
    env.push(("CPIS_PRIVACY_NHS_HASH_KEY", KEY.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stderr) =
        cpis_mesh::testkit::process::run(env!("CARGO_BIN_EXE_cpis-identity"), &["migrate"], &env);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("migrations applied"));
    assert!(dir.path().join("identity.db").exists());
}
