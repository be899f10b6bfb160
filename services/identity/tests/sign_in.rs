//! Sign-in over real mTLS, against Postgres and SQLite: identical answers for unknown users
//! and wrong credentials, lockouts (in memory and shared through Redis), disabled users and
//! role profiles, the role profile chosen, and what a token carries.

mod support;

use std::time::{Duration, Instant};

use cpis_mesh::token::{Activity, OrganisationKind, TokenVerifier};
use cpis_proto::identity::{DisableRoleProfileRequest, DisableUserRequest, IssueTokenRequest};
use support::{Backend, PASSWORD, TestIdentity, with_token};
use tonic::Code;

fn request(username: &str, credential: &str) -> IssueTokenRequest {
    IssueTokenRequest {
        username: username.to_owned(),
        credential: credential.to_owned(),
        role_profile_id: String::new(),
    }
}

async fn wrong_password_and_unknown_user_answer_identically(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let mut ehr = test.org_client("RJ1", "ehr");
    let timed = |username: &'static str| {
        let mut client = ehr.clone();
        async move {
            let started = Instant::now();
            let status = client
                .issue_token(request(username, "not the password"))
                .await
                .unwrap_err();
            (status, started.elapsed())
        }
    };
    let (wrong, wrong_time) = timed("nurse.jones").await;
    let (unknown, unknown_time) = timed("nobody.here").await;
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), wrong.code());
    assert_eq!(unknown.message(), wrong.message());
    assert_eq!(unknown.details(), wrong.details());
    // An unknown user costs an argon2 verification too (against a decoy hash).
    assert!(
        unknown_time * 4 >= wrong_time,
        "unknown {unknown_time:?}, wrong {wrong_time:?}"
    );
    // And the right credential works.
    ehr.issue_token(request("nurse.jones", PASSWORD))
        .await
        .unwrap();
}

async fn lockout_after_repeated_failures_and_release_after_its_window(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let mut ehr = test.org_client("RJ1", "ehr");
    for _ in 0..3 {
        let status = ehr
            .issue_token(request("nurse.jones", "guess"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Locked: even the right credential is refused, and so is an unknown user after as
    // many failures, with the same answer.
    let locked = ehr
        .issue_token(request("nurse.jones", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
    for _ in 0..3 {
        ehr.issue_token(request("ghost", "guess"))
            .await
            .unwrap_err();
    }
    let ghost = ehr
        .issue_token(request("ghost", "guess"))
        .await
        .unwrap_err();
    assert_eq!(ghost.code(), locked.code());
    assert_eq!(ghost.message(), locked.message());
    // Other users are not affected.
    ehr.issue_token(request("admin.lee", PASSWORD))
        .await
        .unwrap();
    // The lockout lasts one second in tests.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ehr.issue_token(request("nurse.jones", PASSWORD))
        .await
        .unwrap();
}

async fn a_disabled_user_or_role_profile_gets_no_token(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let admin = test.admin_token().await;
    let mut ehr = test.org_client("RJ1", "ehr");
    ehr.disable_role_profile(with_token(
        DisableRoleProfileRequest {
            role_profile_id: "rp-multi-clinician".into(),
            reason: "moved on".into(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let status = ehr
        .issue_token(IssueTokenRequest {
            role_profile_id: "rp-multi-clinician".into(),
            ..request("multi.role", PASSWORD)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // The one active profile left is chosen without asking.
    let token = test.sign_in("multi.role", "").await;
    assert_eq!(token.principal.unwrap().role, "registration_clerk");

    ehr.disable_user(with_token(
        DisableUserRequest {
            user_id: "u-nurse".into(),
            reason: "left".into(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let status = ehr
        .issue_token(request("nurse.jones", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A wrong credential still says only that.
    let status = ehr
        .issue_token(request("nurse.jones", "guess"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn a_local_authority_token_carries_no_health_activities(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    // sw.patel's role lists child.check and child.view, but the profile is at an authority.
    let answer = test.sign_in("sw.patel", "").await;
    let verifier = verifier(&test);
    let principal = verifier.verify(&answer.access_token).await.unwrap();
    assert_eq!(principal.organisation.as_str(), "E09000007");
    // The organisation's kind is in the token (claim `ok`), from the directory.
    assert_eq!(
        principal.organisation_kind,
        OrganisationKind::LocalAuthority
    );
    assert!(principal.may(Activity::FlagManage));
    assert!(principal.may(Activity::NotificationRead));
    assert!(principal.may(Activity::AuditRead));
    assert!(!principal.may(Activity::ChildCheck));
    assert!(!principal.may(Activity::ChildView));
    assert_eq!(answer.activities.len(), 3);

    let clinician = test.sign_in("nurse.jones", "").await;
    let principal = verifier.verify(&clinician.access_token).await.unwrap();
    assert_eq!(principal.organisation_kind, OrganisationKind::Health);
    assert!(principal.may(Activity::ChildCheck));
    assert!(!principal.may(Activity::FlagManage));
}

async fn a_token_says_who_for_whom_and_until_when(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let answer = test.sign_in("nurse.jones", "").await;
    assert_eq!(answer.token_type, "Bearer");
    let principal = answer.principal.unwrap();
    assert_eq!(principal.user_id, "u-nurse");
    assert_eq!(principal.display_name, "Nurse Jones");
    assert_eq!(principal.role_profile_id, "rp-nurse");
    assert_eq!(principal.organisation.unwrap().value, "RJ1");
    let verified = verifier(&test).verify(&answer.access_token).await.unwrap();
    let lifetime = verified.expires_at - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((14 * 60..=15 * 60).contains(&lifetime), "{lifetime}");
    assert_eq!(answer.expire_time.unwrap().seconds, verified.expires_at);
}

async fn several_profiles_need_a_choice_and_systems_sign_in_their_own_users(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let mut ehr = test.org_client("RJ1", "ehr");
    let status = ehr
        .issue_token(request("multi.role", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = cpis_mesh::error::field_violations(&status);
    assert_eq!(fields[0].field, "role_profile_id");
    let chosen = test.sign_in("multi.role", "rp-multi-clerk").await;
    assert_eq!(chosen.principal.unwrap().role, "registration_clerk");
    // Someone else's profile is refused once the credential is verified.
    let status = ehr
        .issue_token(IssueTokenRequest {
            role_profile_id: "rp-nurse".into(),
            ..request("multi.role", PASSWORD)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A local authority's system cannot sign in a trust's clinician.
    let status = test
        .org_client("E09000007", "case")
        .issue_token(request("nurse.jones", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Missing fields are named.
    let status = ehr.issue_token(request("", "")).await.unwrap_err();
    let fields: Vec<_> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["username", "credential"]);
}

fn verifier(test: &TestIdentity) -> TokenVerifier {
    test.handle.state.verifier()
}

both_stores!(
    wrong_password_and_unknown_user_answer_identically,
    lockout_after_repeated_failures_and_release_after_its_window,
    a_disabled_user_or_role_profile_gets_no_token,
    a_local_authority_token_carries_no_health_activities,
    a_token_says_who_for_whom_and_until_when,
    several_profiles_need_a_choice_and_systems_sign_in_their_own_users,
);
