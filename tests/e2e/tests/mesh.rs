//! The mesh as deployed, end to end: separate processes, mTLS, Envoy in front, one trace.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cpis_e2e::{CAMDEN, Mesh, TOKEN_LIFETIME_SECS, TRUST, authed, plain_numbers};
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::attendance::{RecordAttendanceRequest, RecordAttendanceResponse};
use cpis_proto::common::{self, CareSettingType, FlagKind, FlagState};
use cpis_proto::flags::bulk_upload_request::Content;
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{
    BulkUploadRequest, FlagRecord, RecordOutcome, UploadHeader, UploadMode, UploadOutcome,
};
use cpis_proto::notification::notification::Payload;
use cpis_proto::notification::notification_service_client::NotificationServiceClient;
use cpis_proto::notification::subscribe_response::Event;
use cpis_proto::notification::{
    ListNotificationsRequest, Notification, SubscribeRequest, SubscribeResponse,
};
use tonic::Code;

const CASE_SYSTEM: &str = "case-system";
const EHR: &str = "ed-ehr";

fn date(year: i32, month: i32, day: i32) -> Option<common::Date> {
    Some(common::Date { year, month, day })
}

/// A child protection plan (or, for odd `i`, a looked-after child under a care order) of
/// Camden for `number`.
fn record(i: usize, number: &str) -> FlagRecord {
    let looked_after = i % 2 == 1;
    FlagRecord {
        case_reference: format!("CAM-{i:04}"),
        nhs_number: Some(common::NhsNumber {
            value: number.to_owned(),
        }),
        date_of_birth: None,
        kind: if looked_after {
            FlagKind::LookedAfterChild as i32
        } else {
            FlagKind::ChildProtectionPlan as i32
        },
        looked_after_legal_basis: if looked_after {
            common::LookedAfterLegalBasis::Section31CareOrder as i32
        } else {
            0
        },
        expected_delivery_date: None,
        start_date: date(2026, 1, 5),
        end_date: None,
        delete_date: None,
    }
}

/// Camden uploads flags for `numbers` through the edge; every record must be stored.
async fn upload(mesh: &Mesh, numbers: &[String]) {
    let token = mesh.sign_in(CAMDEN, CASE_SYSTEM, "camden.social").await;
    let mut messages = vec![BulkUploadRequest {
        content: Some(Content::Header(UploadHeader {
            authority: Some(common::LocalAuthority {
                code: Some(common::OdsCode {
                    value: CAMDEN.to_owned(),
                }),
                name: "London Borough of Camden".to_owned(),
            }),
            contacts: Some(common::AuthorityContacts {
                office_hours_phone: "020 7974 3317".to_owned(),
                emergency_duty_phone: "020 7974 4444".to_owned(),
                secure_email: "mash@camden.gov.uk".to_owned(),
            }),
            sequence_number: 1,
            record_count: numbers.len() as i64,
            mode: UploadMode::Incremental as i32,
            file_name: "plans.csv".to_owned(),
        })),
    }];
    for (i, number) in numbers.iter().enumerate() {
        messages.push(BulkUploadRequest {
            content: Some(Content::Record(record(i, number))),
        });
    }
    let mut client = FlagRegistryServiceClient::new(mesh.edge_channel(CAMDEN, CASE_SYSTEM));
    let report = client
        .bulk_upload(authed(&token, tokio_stream::iter(messages)))
        .await
        .expect("the upload")
        .into_inner();
    let report = report.report.expect("a report");
    assert_eq!(report.outcome, UploadOutcome::Success as i32, "{report:?}");
    assert!(
        report
            .records
            .iter()
            .all(|r| r.outcome == RecordOutcome::Stored as i32),
        "{report:?}"
    );
}

fn check_request(trust: &str, site: &str, number: &str) -> RecordAttendanceRequest {
    RecordAttendanceRequest {
        nhs_number: Some(common::NhsNumber {
            value: number.to_owned(),
        }),
        care_setting: Some(common::CareSetting {
            organisation: Some(common::OdsCode {
                value: trust.to_owned(),
            }),
            site: site.to_owned(),
            setting_type: CareSettingType::EmergencyDepartment as i32,
            name: "Emergency Department".to_owned(),
            phone: String::new(),
        }),
        arrival_time: None,
        request_id: String::new(),
    }
}

/// The clinician at St Thomas' checks `number` through the edge.
async fn check(mesh: &Mesh, number: &str) -> Result<RecordAttendanceResponse, tonic::Status> {
    let token = mesh.sign_in(TRUST, EHR, "ed.clinician").await;
    AttendanceServiceClient::new(mesh.edge_channel(TRUST, EHR))
        .record_attendance(authed(&token, check_request(TRUST, "RJ122", number)))
        .await
        .map(tonic::Response::into_inner)
}

fn child_of(n: &Notification) -> String {
    match &n.payload {
        Some(Payload::Attendance(a)) => a
            .nhs_number
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Camden's whole inbox, through the edge.
async fn inbox(mesh: &Mesh) -> Vec<Notification> {
    let token = mesh.sign_in(CAMDEN, CASE_SYSTEM, "camden.social").await;
    let mut client = NotificationServiceClient::new(mesh.edge_channel(CAMDEN, CASE_SYSTEM));
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_notifications(authed(
                &token,
                ListNotificationsRequest {
                    authority: Some(common::OdsCode {
                        value: CAMDEN.to_owned(),
                    }),
                    unacknowledged_only: false,
                    kinds: Vec::new(),
                    page_size: 100,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .expect("list the inbox")
            .into_inner();
        all.extend(page.notifications);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_child_is_checked_through_the_edge_and_everyone_who_must_know_knows() {
    let mesh = Mesh::start().await;
    let numbers = plain_numbers();
    let children = &numbers[..3];
    let unflagged = &numbers[10];

    // An authority uploads flags.
    upload(&mesh, children).await;

    // The authority's system subscribes to its inbox.
    let token = mesh.sign_in(CAMDEN, CASE_SYSTEM, "camden.social").await;
    let mut stream = NotificationServiceClient::new(mesh.edge_channel(CAMDEN, CASE_SYSTEM))
        .subscribe(authed(
            &token,
            SubscribeRequest {
                authority: Some(common::OdsCode {
                    value: CAMDEN.to_owned(),
                }),
                cursor: String::new(),
                kinds: Vec::new(),
            },
        ))
        .await
        .expect("subscribe")
        .into_inner();

    // A clinician checks the flagged child: flag, contacts and history.
    let first = check(&mesh, &children[0]).await.expect("the first check");
    assert_eq!(first.flags.len(), 1, "{first:?}");
    let flag = &first.flags[0];
    assert_eq!(flag.kind, FlagKind::ChildProtectionPlan as i32);
    assert_eq!(flag.state, FlagState::Current as i32);
    let contacts = flag.contacts.as_ref().expect("the authority's contacts");
    assert_eq!(contacts.emergency_duty_phone, "020 7974 4444");
    assert_eq!(contacts.secure_email, "mash@camden.gov.uk");
    assert!(first.authorities_notified);
    let second = check(&mesh, &children[0]).await.expect("the second check");
    assert_eq!(second.recent_attendances.len(), 2, "{second:?}");

    // An unflagged child is an ordinary answer.
    let plain = check(&mesh, unflagged).await.expect("an unflagged check");
    assert!(plain.flags.is_empty() && !plain.authorities_notified);

    // The authority's subscriber hears of the attendance.
    let heard = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await.expect("the stream").expect("open") {
                SubscribeResponse {
                    event: Some(Event::Notification(n)),
                } if child_of(&n) == children[0] => {
                    return n;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("a live notification within 20 s");
    assert_eq!(child_of(&heard), children[0]);

    // The audit log holds the checks, and verifies from outside through the edge.
    let officer = mesh.sign_in(TRUST, EHR, "privacy.officer").await;
    let edge = format!("https://localhost:{}", mesh.edge.port());
    let state = tempfile::tempdir().expect("state dir");
    let state_file = state.path().join("checkpoint");
    let mut verified = None;
    for _ in 0..40 {
        let (code, out) = mesh.cpis(
            TRUST,
            EHR,
            &[
                "audit",
                "query",
                "--nhs-number",
                &children[0],
                "--action",
                "attendance.check",
                "--token",
                &officer,
                "--json",
            ],
        );
        assert_eq!(code, 0, "{out}");
        let found: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        if found["entries"].as_array().map_or(0, Vec::len) >= 2 {
            verified = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let found = verified.expect("both checks in the audit log");
    assert_eq!(found["entries"][0]["outcome"], "success");
    // The national privacy office verifies every event (a hospital's officer sees only its
    // own organisation's).
    let auditor = mesh.sign_in("X26", "audit-tool", "national.auditor").await;
    let (code, out) = mesh.cpis(
        "X26",
        "audit-tool",
        &[
            "audit",
            "verify",
            "--address",
            &edge,
            "--vkey",
            &mesh.audit_vkey,
            "--state",
            state_file.to_str().expect("utf-8"),
            "--full",
            "--token",
            &auditor,
        ],
    );
    assert_eq!(code, 0, "cpis audit verify: {out}");
    assert!(out.contains("hash to the signed root"), "{out}");

    // One trace: the edge, attendance, flag-registry, and through the outbox audit and
    // notification.
    let check_span = mesh
        .otlp
        .wait_for(Duration::from_secs(20), |s| {
            s.service_name == "attendance"
                && s.attributes.get("rpc.method").map(String::as_str) == Some("RecordAttendance")
        })
        .await
        .expect("attendance's server span of the check");
    let trace = check_span.trace_id.clone();
    let wanted: BTreeSet<&str> = [
        "edge",
        "attendance",
        "flag-registry",
        "audit",
        "notification",
    ]
    .into_iter()
    .collect();
    let mut seen = BTreeSet::new();
    for _ in 0..80 {
        seen = mesh
            .otlp
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .map(|s| s.service_name)
            .collect();
        if wanted.iter().all(|w| seen.contains(*w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
    assert!(
        wanted.is_subset(&seen),
        "trace {trace} has spans from {seen:?}, wanted {wanted:?}"
    );
    // Attendance's span is a child of the edge's.
    let spans = mesh.otlp.spans();
    let by_id: BTreeMap<&str, &str> = spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| (s.span_id.as_str(), s.service_name.as_str()))
        .collect();
    let mut parent = check_span.parent_span_id.as_str();
    let mut from_edge = false;
    // Walk up within attendance's own spans (the RPC span may sit under a transport span).
    for _ in 0..4 {
        match by_id.get(parent) {
            Some(&"edge") => {
                from_edge = true;
                break;
            }
            Some(_) => {
                parent = spans
                    .iter()
                    .find(|s| s.span_id == parent)
                    .map_or("", |s| s.parent_span_id.as_str());
            }
            None => break,
        }
    }
    assert!(
        from_edge,
        "attendance's span does not descend from the edge's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_at_the_edge_and_at_the_service_have_their_exact_status() {
    let mesh = Mesh::start().await;
    let numbers = plain_numbers();
    upload(&mesh, &numbers[..1]).await;

    // No client certificate: the edge ends the TLS handshake with `certificate_required`.
    let refused = cpis_e2e::connect_without_client_certificate(&mesh).await;
    assert!(refused.contains("CertificateRequired"), "{refused}");

    // An invalid NHS number: INVALID_ARGUMENT naming the field.
    let status = check(&mesh, "9434765918")
        .await
        .expect_err("invalid number");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let fields: Vec<String> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["nhs_number"], "{status:?}");

    // Another organisation's setting: PERMISSION_DENIED before any lookup.
    let token = mesh.sign_in(TRUST, EHR, "ed.clinician").await;
    let status = AttendanceServiceClient::new(mesh.edge_channel(TRUST, EHR))
        .record_attendance(authed(&token, check_request("RAL", "RAL01", &numbers[0])))
        .await
        .expect_err("another organisation's setting");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // An expired token: UNAUTHENTICATED.
    let token = mesh.sign_in(TRUST, EHR, "ed.clinician").await;
    tokio::time::sleep(Duration::from_secs(TOKEN_LIFETIME_SECS + 1)).await;
    let status = AttendanceServiceClient::new(mesh.edge_channel(TRUST, EHR))
        .record_attendance(authed(&token, check_request(TRUST, "RJ122", &numbers[0])))
        .await
        .expect_err("an expired token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_survive_a_kill_9_of_the_notification_service_during_a_burst() {
    let mut mesh = Mesh::start().await;
    let numbers = plain_numbers();
    let children: Vec<String> = numbers[..16].to_vec();
    upload(&mesh, &children).await;

    // The first half is checked with notification up, then it dies without a word, the
    // second half is checked while it is down (the checks still succeed: the events wait in
    // attendance's outbox), and it comes back.
    for child in &children[..8] {
        check(&mesh, child).await.expect("a check");
    }
    mesh.kill9("notification");
    for child in &children[8..] {
        check(&mesh, child)
            .await
            .expect("a check while notification is down");
    }
    mesh.restart("notification");

    // Every attendance reaches the inbox exactly once.
    let mut last = Vec::new();
    for _ in 0..120 {
        last = inbox(&mesh).await;
        if last.len() >= children.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut per_child: BTreeMap<String, usize> = BTreeMap::new();
    for n in &last {
        *per_child.entry(child_of(n)).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = children.iter().map(|c| (c.clone(), 1)).collect();
    assert_eq!(per_child, expected, "each child's attendance once");
    let events: BTreeSet<&str> = last.iter().map(|n| n.event_id.as_str()).collect();
    assert_eq!(events.len(), children.len(), "no event twice");
}
