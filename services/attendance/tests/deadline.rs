//! The check within its caller's deadline: the flag registry is asked for no longer than
//! the caller can wait, so a check never outlives its caller, and a flag registry that
//! cannot answer in time makes the check UNAVAILABLE with the clinician's message, recording
//! nothing. No assertion here is about speed: only about which answer comes back.

mod support;

use std::time::Duration;

use cpis_proto::common::CareSettingType;
use support::{CAMDEN, Flags, Mesh, TRUST, nhs};
use tonic::Code;

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$case(&cpis_mesh::testkit::postgres_database().await).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "attendance")).await;
            }
        }
    )*};
}

on_both_stores!(
    a_caller_with_a_short_deadline_hears_the_clinicians_message_not_its_own_deadline,
    an_unreachable_flag_registry_is_unavailable_and_nothing_is_recorded,
    a_caller_deadline_that_leaves_time_is_answered_as_usual,
);

const ED: CareSettingType = CareSettingType::EmergencyDepartment;

/// A check of `number` sent with a `grpc-timeout` of `timeout`, on a connection already
/// made: the caller's deadline then counts the same time as the service's (a handshake
/// would be on the caller's clock only).
async fn check_within(
    mesh: &Mesh,
    number: &str,
    timeout: Duration,
) -> Result<cpis_proto::attendance::RecordAttendanceResponse, tonic::Status> {
    let token = mesh.clinician(TRUST);
    let mut client = mesh.ehr(TRUST);
    // Refused by validation, before any lookup: it only opens the connection.
    let warm_up = client
        .record_attendance(support::authed(&token, support::request(TRUST, ED, "1")))
        .await
        .unwrap_err();
    assert_eq!(warm_up.code(), Code::InvalidArgument);
    let mut request = support::authed(&token, support::request(TRUST, ED, number));
    request.set_timeout(timeout);
    client
        .record_attendance(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn assert_nothing_recorded(mesh: &Mesh, number: &str) {
    assert!(mesh.outbox().await.is_empty(), "nothing recorded");
    assert_eq!(mesh.attendances_of(number).await, 0);
}

async fn a_caller_with_a_short_deadline_hears_the_clinicians_message_not_its_own_deadline(
    url: &str,
) {
    // The configured deadline alone would keep the check waiting far beyond its caller:
    // the caller's two seconds must bound the wait instead.
    let mesh = support::start_with_section(url, Flags::Hanging, |section| {
        section.flags_deadline = cpis_mesh::duration::HumanDuration::from_secs(600);
    })
    .await;
    let status = check_within(&mesh, &nhs(8), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "the check answers before its caller gives up: {status:?}"
    );
    assert_eq!(status.message(), cpis_attendance::FLAGS_UNAVAILABLE);
    assert_nothing_recorded(&mesh, &nhs(8)).await;
}

async fn an_unreachable_flag_registry_is_unavailable_and_nothing_is_recorded(url: &str) {
    let mesh = support::start_with(url, Flags::Unreachable).await;
    let status = check_within(&mesh, &nhs(9), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), cpis_attendance::FLAGS_UNAVAILABLE);
    assert_nothing_recorded(&mesh, &nhs(9)).await;
}

async fn a_caller_deadline_that_leaves_time_is_answered_as_usual(url: &str) {
    let mesh = support::start(url).await;
    let child = nhs(10);
    mesh.flag(CAMDEN, "CAM-10", &child).await;
    let answer = check_within(&mesh, &child, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(answer.flags.len(), 1);
    assert_eq!(mesh.attendances_of(&child).await, 1);
}
