//! RecordAttendance, the check, against the real flag registry, on both stores.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cpis_mesh::error::field_violations;
use cpis_proto::common::{CareSettingType, FlagState};
use cpis_proto::notification::notification_event::Payload;
use support::{CAMDEN, Flags, ISLINGTON, Mesh, OTHER_TRUST, TRUST, nhs};
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
    a_flagged_child_at_an_emergency_department_is_answered_kept_audited_and_notified,
    an_unflagged_child_is_an_ordinary_answer_audited_but_not_kept,
    a_scheduled_setting_views_silently,
    the_wrong_activity_or_organisation_is_refused_before_any_lookup,
    an_invalid_nhs_number_is_refused_naming_the_field,
    the_26th_attendance_pushes_the_oldest_out_of_the_answer,
    recently_ended_flags_notify_and_history_keeps_attendances_only_within_its_window,
    a_retry_with_the_same_request_id_answers_as_the_first_and_records_nothing_new,
);

const ED: CareSettingType = CareSettingType::EmergencyDepartment;

async fn a_flagged_child_at_an_emergency_department_is_answered_kept_audited_and_notified(
    url: &str,
) {
    let mesh = support::start(url).await;
    let child = nhs(1);
    mesh.flag(CAMDEN, "CAM-1", &child).await;
    mesh.flag(ISLINGTON, "ISL-1", &child).await;

    let answer = mesh
        .check(&mesh.clinician(TRUST), TRUST, ED, &child)
        .await
        .unwrap();

    assert_eq!(answer.flags.len(), 2, "{answer:?}");
    assert!(
        answer
            .flags
            .iter()
            .all(|f| f.state == FlagState::Current as i32)
    );
    let camden = answer
        .flags
        .iter()
        .find(|f| f.case_reference == "CAM-1")
        .unwrap();
    let contacts = camden.contacts.as_ref().unwrap();
    assert_eq!(contacts.emergency_duty_phone, "020 7974 4444");
    assert_eq!(contacts.secure_email, format!("mash@{CAMDEN}.gov.uk"));
    assert!(answer.authorities_notified);
    assert_eq!(
        answer.recent_attendances.len(),
        1,
        "this attendance is kept"
    );
    let setting = answer.recent_attendances[0].care_setting.as_ref().unwrap();
    assert_eq!(setting.organisation.as_ref().unwrap().value, TRUST);
    assert_eq!(setting.setting_type, ED as i32);
    assert_eq!(mesh.attendances_of(&child).await, 1);

    let audits = mesh.audit_events().await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].event_id, answer.check_id);
    assert_eq!(audits[0].action, cpis_attendance::events::CHECK);
    assert_eq!(audits[0].nhs_number.as_ref().unwrap().value, child);
    let notices = mesh.notification_events().await;
    let authorities: BTreeSet<String> = notices
        .iter()
        .map(|n| n.authority.as_ref().unwrap().value.clone())
        .collect();
    assert_eq!(
        authorities,
        BTreeSet::from([CAMDEN.to_owned(), ISLINGTON.to_owned()]),
        "one notice per authority"
    );
    for notice in &notices {
        let Some(Payload::Attendance(attendance)) = &notice.payload else {
            panic!("an attendance notice: {notice:?}");
        };
        assert_eq!(attendance.nhs_number.as_ref().unwrap().value, child);
        assert_eq!(
            attendance.flags.len(),
            1,
            "each authority sees its own flag"
        );
        let own = &attendance.flags[0];
        assert_eq!(
            own.authority.as_ref().unwrap().code.as_ref().unwrap().value,
            notice.authority.as_ref().unwrap().value
        );
        assert_eq!(
            attendance.practitioner.as_ref().unwrap().user_id,
            "u-clinician"
        );
    }
}

async fn an_unflagged_child_is_an_ordinary_answer_audited_but_not_kept(url: &str) {
    let mesh = support::start(url).await;
    let child = nhs(2);
    // Another child is flagged: the check must not mix them up.
    mesh.flag(CAMDEN, "CAM-1", &nhs(1)).await;

    let answer = mesh
        .check(&mesh.clinician(TRUST), TRUST, ED, &child)
        .await
        .unwrap();

    assert!(answer.flags.is_empty());
    assert!(answer.recent_attendances.is_empty());
    assert!(!answer.authorities_notified);
    assert!(!answer.check_id.is_empty());
    assert_eq!(mesh.attendances_of(&child).await, 0, "data minimisation");
    let audits = mesh.audit_events().await;
    assert_eq!(audits.len(), 1, "the check itself is audited");
    assert_eq!(audits[0].event_id, answer.check_id);
    assert_eq!(audits[0].nhs_number.as_ref().unwrap().value, child);
    assert!(mesh.notification_events().await.is_empty());
    mesh.assert_flag_reads(1, "the flag registry was asked")
        .await;
}

async fn a_scheduled_setting_views_silently(url: &str) {
    let mesh = support::start(url).await;
    let child = nhs(3);
    mesh.flag(CAMDEN, "CAM-3", &child).await;
    let viewer = mesh.token("u-gp", TRUST, "clinician", &["child.view"]);

    let answer = mesh
        .check(&viewer, TRUST, CareSettingType::GpPractice, &child)
        .await
        .unwrap();

    assert_eq!(answer.flags.len(), 1);
    assert!(!answer.authorities_notified);
    assert_eq!(mesh.attendances_of(&child).await, 1);
    assert!(
        mesh.notification_events().await.is_empty(),
        "a scheduled setting notifies no authority"
    );
    let audits = mesh.audit_events().await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].action, cpis_attendance::events::VIEW);
    // child.view alone does not allow a check at an unscheduled setting.
    let refused = mesh.check(&viewer, TRUST, ED, &child).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

async fn the_wrong_activity_or_organisation_is_refused_before_any_lookup(url: &str) {
    let mesh = support::start(url).await;
    let flagged = nhs(4);
    mesh.flag(CAMDEN, "CAM-4", &flagged).await;
    let unflagged = nhs(5);
    let clerk = mesh.token("u-clerk", TRUST, "registration-clerk", &["flag.manage"]);
    let elsewhere = mesh.clinician(OTHER_TRUST);

    let mut messages = Vec::new();
    for child in [&flagged, &unflagged] {
        let status = mesh.check(&clerk, TRUST, ED, child).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        messages.push(status.message().to_owned());
        // A clinician of another trust, through this trust's system, for this trust's setting.
        let status = mesh.check(&elsewhere, TRUST, ED, child).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        messages.push(status.message().to_owned());
    }
    assert_eq!(messages[0], messages[2], "flagged and unflagged look alike");
    assert_eq!(messages[1], messages[3], "flagged and unflagged look alike");

    assert_eq!(
        mesh.flag_reads().await,
        0,
        "the flag registry was not asked"
    );
    assert_eq!(mesh.attendances_of(&flagged).await, 0);
    assert!(mesh.outbox().await.is_empty(), "nothing recorded");
    // The same user, allowed, is answered: the refusals were about the user.
    mesh.check(&mesh.clinician(TRUST), TRUST, ED, &flagged)
        .await
        .unwrap();
    mesh.assert_flag_reads(1, "asked once").await;
}

async fn an_invalid_nhs_number_is_refused_naming_the_field(url: &str) {
    let mesh = support::start(url).await;
    let mut bad = nhs(6);
    // Another last digit breaks the check digit.
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });

    let status = mesh
        .check(&mesh.clinician(TRUST), TRUST, ED, &bad)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["nhs_number"]);
    let mut request = support::request(TRUST, ED, &nhs(6));
    request.care_setting.as_mut().unwrap().setting_type = 0;
    request.arrival_time = Some(prost_types::Timestamp {
        seconds: time::OffsetDateTime::now_utc().unix_timestamp() + 3600,
        nanos: 0,
    });
    let status = mesh
        .ehr(TRUST)
        .record_attendance(support::authed(&mesh.clinician(TRUST), request))
        .await
        .unwrap_err();
    let fields: BTreeSet<String> = field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "care_setting.setting_type".to_owned(),
            "arrival_time".to_owned()
        ])
    );
    assert!(mesh.outbox().await.is_empty());
    assert_eq!(mesh.flag_reads().await, 0);
}

async fn the_26th_attendance_pushes_the_oldest_out_of_the_answer(url: &str) {
    let mesh = support::start(url).await;
    let child = nhs(7);
    mesh.flag(CAMDEN, "CAM-7", &child).await;
    let token = mesh.clinician(TRUST);
    let start = time::OffsetDateTime::now_utc().unix_timestamp() - 100 * 3600;
    let mut answer = None;
    for i in 0..26_i64 {
        let mut request = support::request(TRUST, ED, &child);
        request.arrival_time = Some(prost_types::Timestamp {
            seconds: start + i * 3600,
            nanos: 0,
        });
        answer = Some(
            mesh.ehr(TRUST)
                .record_attendance(support::authed(&token, request))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let answer = answer.unwrap();
    assert_eq!(answer.recent_attendances.len(), 25);
    let arrivals: Vec<i64> = answer
        .recent_attendances
        .iter()
        .map(|a| a.arrival_time.unwrap().seconds)
        .collect();
    assert_eq!(arrivals[0], start + 25 * 3600, "newest first");
    assert_eq!(arrivals[24], start + 3600, "the oldest is out");
    assert_eq!(mesh.attendances_of(&child).await, 26, "all kept");
}

async fn recently_ended_flags_notify_and_history_keeps_attendances_only_within_its_window(
    url: &str,
) {
    let mesh = support::start(url).await;
    let token = mesh.clinician(TRUST);
    let day = time::Duration::days(1);
    // Ended a month ago: recently ended (12 months for a plan).
    let recent = nhs(10);
    mesh.flag_ended(CAMDEN, "CAM-10", &recent, day * 30).await;
    // Ended 500 days ago: history, within the 24 months that keep attendances.
    let history = nhs(11);
    mesh.flag_ended(CAMDEN, "CAM-11", &history, day * 500).await;
    // Ended 1500 days ago: history beyond the retention window.
    let old = nhs(12);
    mesh.flag_ended(CAMDEN, "CAM-12", &old, day * 1500).await;

    let answer = mesh.check(&token, TRUST, ED, &recent).await.unwrap();
    assert_eq!(answer.flags.len(), 1);
    assert_eq!(answer.flags[0].state, FlagState::RecentlyEnded as i32);
    assert!(answer.authorities_notified);
    assert_eq!(mesh.attendances_of(&recent).await, 1);
    assert_eq!(mesh.notification_events().await.len(), 1);

    let answer = mesh.check(&token, TRUST, ED, &history).await.unwrap();
    assert!(answer.flags.is_empty(), "history is not shown: {answer:?}");
    assert!(!answer.authorities_notified);
    assert_eq!(
        mesh.attendances_of(&history).await,
        1,
        "but it keeps attendances"
    );

    let answer = mesh.check(&token, TRUST, ED, &old).await.unwrap();
    assert!(answer.flags.is_empty());
    assert_eq!(
        mesh.attendances_of(&old).await,
        0,
        "past the retention window"
    );

    assert_eq!(
        mesh.notification_events().await.len(),
        1,
        "only the recent one"
    );
    assert_eq!(mesh.audit_events().await.len(), 3, "every check audited");
}

async fn a_retry_with_the_same_request_id_answers_as_the_first_and_records_nothing_new(url: &str) {
    let mesh = support::start(url).await;
    let child = nhs(13);
    mesh.flag(CAMDEN, "CAM-13", &child).await;
    let token = mesh.clinician(TRUST);
    let mut request = support::request(TRUST, ED, &child);
    request.request_id = uuid::Uuid::new_v4().to_string();
    let call = |token: String, request| {
        let mut client = mesh.ehr(TRUST);
        async move {
            client
                .record_attendance(support::authed(&token, request))
                .await
                .unwrap()
                .into_inner()
        }
    };

    let first = call(token.clone(), request.clone()).await;
    let retry = call(token.clone(), request.clone()).await;
    assert_eq!(retry, first, "answered as the first call was");
    assert_eq!(mesh.attendances_of(&child).await, 1);
    assert_eq!(mesh.audit_events().await.len(), 1);
    assert_eq!(mesh.notification_events().await.len(), 1);
    mesh.assert_flag_reads(1, "a retry asks nothing again")
        .await;

    // Concurrent first calls with one id: one check recorded, every caller the same answer.
    request.request_id = uuid::Uuid::new_v4().to_string();
    let answers = futures_join(
        (0..5)
            .map(|_| call(token.clone(), request.clone()))
            .collect(),
    )
    .await;
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(mesh.attendances_of(&child).await, 2);
    assert_eq!(mesh.audit_events().await.len(), 2);

    // Another user's id space is their own.
    let colleague = mesh.token("u-other", TRUST, "clinician", &["child.check"]);
    let theirs = call(colleague, request).await;
    assert_ne!(theirs.check_id, answers[0].check_id);
    assert_eq!(mesh.attendances_of(&child).await, 3);
}

/// Runs `calls` at the same time.
async fn futures_join<T: Send + 'static>(
    calls: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flag_registry_that_does_not_answer_in_time_is_unavailable_and_nothing_is_recorded_postgres()
 {
    flag_registry_down(&cpis_mesh::testkit::postgres_database().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flag_registry_that_does_not_answer_in_time_is_unavailable_and_nothing_is_recorded_sqlite()
 {
    let dir = tempfile::tempdir().unwrap();
    flag_registry_down(&cpis_mesh::testkit::sqlite_database(
        dir.path(),
        "attendance",
    ))
    .await;
}

async fn flag_registry_down(url: &str) {
    let mesh: Mesh = support::start_with(url, Flags::Hanging).await;
    let started = Instant::now();
    let status = mesh
        .check(&mesh.clinician(TRUST), TRUST, ED, &nhs(8))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), cpis_attendance::FLAGS_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within the deadline, not the client's: {:?}",
        started.elapsed()
    );
    assert!(mesh.outbox().await.is_empty(), "nothing recorded");
    assert_eq!(mesh.attendances_of(&nhs(8)).await, 0);
}
