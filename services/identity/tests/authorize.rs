//! `Authorize` over gRPC, against Postgres and SQLite: every reason for a denial, and the
//! changes it sees that local verification cannot (users and profiles disabled since).

mod support;

use cpis_proto::common::OdsCode;
use cpis_proto::identity::*;
use support::{Backend, TestIdentity, with_token};
use tonic::Request;

fn ask(activity: Activity, organisation: Option<&str>) -> AuthorizeRequest {
    AuthorizeRequest {
        activity: activity as i32,
        organisation: organisation.map(|o| OdsCode { value: o.into() }),
    }
}

async fn every_denial_gives_its_reason(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let mut attendance = test.service_client("attendance");
    let nurse = test.sign_in("nurse.jones", "").await.access_token;
    let decide = |request: Request<AuthorizeRequest>| {
        let mut client = attendance.clone();
        async move { client.authorize(request).await.unwrap().into_inner() }
    };
    let allowed = decide(with_token(ask(Activity::ChildCheck, Some("RJ1")), &nurse)).await;
    assert!(allowed.allowed, "{allowed:?}");
    assert_eq!(allowed.denial_reason, DenialReason::Unspecified as i32);
    assert_eq!(
        allowed.principal.as_ref().unwrap().display_name,
        "Nurse Jones"
    );
    assert!(allowed.expire_time.is_some());

    let cases = [
        (
            with_token(ask(Activity::FlagManage, None), &nurse),
            DenialReason::ActivityNotGranted,
        ),
        (
            with_token(ask(Activity::ChildCheck, Some("RXH")), &nurse),
            DenialReason::OrganisationMismatch,
        ),
        (
            Request::new(ask(Activity::ChildCheck, None)),
            DenialReason::TokenMissing,
        ),
        (
            with_token(ask(Activity::ChildCheck, None), "a.b.c"),
            DenialReason::TokenInvalid,
        ),
    ];
    for (request, reason) in cases {
        let answer = decide(request).await;
        assert!(!answer.allowed);
        assert_eq!(answer.denial_reason, reason as i32, "{answer:?}");
        assert!(!answer.message.is_empty());
    }

    // Disabled after the token was issued: local verification cannot know, Authorize does.
    let admin = test.admin_token().await;
    let mut ehr = test.org_client("RJ1", "ehr");
    let clerk = test
        .sign_in("multi.role", "rp-multi-clerk")
        .await
        .access_token;
    ehr.disable_role_profile(with_token(
        DisableRoleProfileRequest {
            role_profile_id: "rp-multi-clerk".into(),
            reason: String::new(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let answer = decide(with_token(ask(Activity::ChildCheck, None), &clerk)).await;
    assert_eq!(
        answer.denial_reason,
        DenialReason::RoleProfileDisabled as i32
    );
    ehr.disable_user(with_token(
        DisableUserRequest {
            user_id: "u-nurse".into(),
            reason: String::new(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let answer = decide(with_token(ask(Activity::ChildCheck, None), &nurse)).await;
    assert_eq!(answer.denial_reason, DenialReason::UserDisabled as i32);
    assert!(test.handle.state.verifier().verify(&nurse).await.is_ok());

    // An unspecified activity is a bad request, not a denial.
    let status = attendance
        .authorize(with_token(ask(Activity::Unspecified, None), &admin))
        .await
        .unwrap_err();
    assert_eq!(
        cpis_mesh::error::field_violations(&status)[0].field,
        "activity"
    );
}

both_stores!(every_denial_gives_its_reason);
