//! The `cpis-flag-registry` binary as a real process, configured as a deployment configures it.

use cpis_mesh::testkit::process::{assert_refuses_bad_configuration, assert_serves_and_stops};

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_logs_in_json_with_trace_ids_and_stops_on_sigterm() {
    // Its database in a directory of its own, not beside the sources.
    let dir = tempfile::tempdir().unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir.path(), "flags");
    assert_serves_and_stops(
        env!("CARGO_BIN_EXE_cpis-flag-registry"),
        "flag-registry",
        &[
            ("CPIS_FLAGS_DATABASE_URL", url),
            // No audit service in this test: events stay in the outbox.
            ("CPIS_FLAGS_AUDIT_ADDRESS", String::new()),
        ],
    )
    .await;
}

#[test]
fn refuses_to_start_without_the_hash_key() {
    assert_refuses_bad_configuration(env!("CARGO_BIN_EXE_cpis-flag-registry"));
}
