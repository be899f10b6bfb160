//! ListAttendances: an authority's users see the attendances of children it holds a flag
//! for, and no one else's; on both stores.

mod support;

use cpis_proto::attendance::ListAttendancesRequest;
use cpis_proto::common::{self, CareSettingType};
use support::{CAMDEN, ISLINGTON, TRUST, authed, nhs};
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
    an_authority_lists_its_flagged_childrens_attendances_newest_first_in_pages,
    other_users_and_other_authorities_are_refused,
);

const ED: CareSettingType = CareSettingType::EmergencyDepartment;

fn list(authority: &str) -> ListAttendancesRequest {
    ListAttendancesRequest {
        authority: Some(common::OdsCode {
            value: authority.into(),
        }),
        ..ListAttendancesRequest::default()
    }
}

async fn an_authority_lists_its_flagged_childrens_attendances_newest_first_in_pages(url: &str) {
    let mesh = support::start(url).await;
    let (ours, theirs, unflagged) = (nhs(1), nhs(2), nhs(3));
    mesh.flag(CAMDEN, "CAM-1", &ours).await;
    mesh.flag(ISLINGTON, "ISL-2", &theirs).await;
    let clinician = mesh.clinician(TRUST);
    let mut checks = Vec::new();
    for child in [&ours, &theirs, &unflagged, &ours, &ours] {
        checks.push(mesh.check(&clinician, TRUST, ED, child).await.unwrap());
    }
    let reader = mesh.token("u-mash", CAMDEN, "social-worker", &["notification.read"]);
    let mut client = mesh.ehr(CAMDEN);

    let mut request = list(CAMDEN);
    request.page_size = 2;
    let first = client
        .list_attendances(authed(&reader, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.attendances.len(), 2);
    assert!(!first.next_page_token.is_empty());
    request.page_token = first.next_page_token.clone();
    let second = client
        .list_attendances(authed(&reader, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.attendances.len(), 1);
    assert!(second.next_page_token.is_empty());

    let all: Vec<_> = first
        .attendances
        .iter()
        .chain(&second.attendances)
        .collect();
    assert!(
        all.iter()
            .all(|a| a.nhs_number.as_ref().unwrap().value == ours),
        "only the authority's flagged child: {all:?}"
    );
    let arrivals: Vec<_> = all.iter().map(|a| a.arrival_time.unwrap()).collect();
    assert!(
        arrivals
            .windows(2)
            .all(|w| (w[0].seconds, w[0].nanos) >= (w[1].seconds, w[1].nanos)),
        "newest first"
    );
    let a = all[0];
    assert!(a.flag_current);
    assert_eq!(a.practitioner.as_ref().unwrap().user_id, "u-clinician");
    assert_eq!(
        a.care_setting
            .as_ref()
            .unwrap()
            .organisation
            .as_ref()
            .unwrap()
            .value,
        TRUST
    );

    let mut one_child = list(CAMDEN);
    one_child.nhs_number = Some(common::NhsNumber {
        value: theirs.clone(),
    });
    let none = client
        .list_attendances(authed(&reader, one_child))
        .await
        .unwrap()
        .into_inner();
    assert!(none.attendances.is_empty(), "another authority's child");

    let lists = mesh
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == cpis_attendance::events::LIST)
        .count();
    assert_eq!(lists, 3, "every list is audited");
}

async fn other_users_and_other_authorities_are_refused(url: &str) {
    let mesh = support::start(url).await;
    let child = nhs(4);
    mesh.flag(CAMDEN, "CAM-4", &child).await;
    mesh.check(&mesh.clinician(TRUST), TRUST, ED, &child)
        .await
        .unwrap();
    let islington = mesh.token("u-isl", ISLINGTON, "social-worker", &["notification.read"]);
    let clinician = mesh.token("u-doc", CAMDEN, "clinician", &["child.check"]);
    for (token, authority) in [(&islington, CAMDEN), (&clinician, CAMDEN)] {
        let status = mesh
            .ehr(CAMDEN)
            .list_attendances(authed(token, list(authority)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let mut bad = list(CAMDEN);
    bad.page_token = "forged".into();
    let reader = mesh.token("u-mash", CAMDEN, "social-worker", &["notification.read"]);
    let status = mesh
        .ehr(CAMDEN)
        .list_attendances(authed(&reader, bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        mesh.audit_events()
            .await
            .into_iter()
            .filter(|e| e.action == cpis_attendance::events::LIST)
            .count(),
        0,
        "refused lists read nothing"
    );
}
