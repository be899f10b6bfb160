//! The `cpis-attendance` binary as a real process, configured as a deployment configures it.

use cpis_mesh::testkit::process::{assert_refuses_bad_configuration, assert_serves_and_stops};

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_logs_in_json_with_trace_ids_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir.path(), "attendance");
    assert_serves_and_stops(
        env!("CARGO_BIN_EXE_cpis-attendance"),
        "attendance",
        &[("CPIS_ATTENDANCE_DATABASE_URL", url)],
    )
    .await;
    assert!(
        dir.path().join("attendance.db").exists(),
        "the binary stores in the configured database"
    );
}

#[test]
fn refuses_to_start_without_the_hash_key() {
    assert_refuses_bad_configuration(env!("CARGO_BIN_EXE_cpis-attendance"));
}
