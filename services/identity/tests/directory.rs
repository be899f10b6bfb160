//! The directory over gRPC, against Postgres and SQLite: import (idempotent, all or nothing),
//! export, users and role profiles, organisations, paging.

mod support;

use cpis_proto::common::OdsCode;
use cpis_proto::identity::*;
use support::{Backend, DIRECTORY, PASSWORD, TestIdentity, with_token};
use tonic::Code;

fn import(yaml: &str, validate_only: bool) -> ImportDirectoryRequest {
    ImportDirectoryRequest {
        directory_yaml: yaml.to_owned(),
        validate_only,
    }
}

async fn importing_a_directory_twice_changes_nothing_the_second_time(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let admin = test.admin_token().await;
    let mut client = test.org_client("RJ1", "ehr");
    // The support imported DIRECTORY at start: 1 role, 2 organisations, 4 users, 5 profiles.
    let again = client
        .import_directory(with_token(import(DIRECTORY, false), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            again.created_count,
            again.updated_count,
            again.unchanged_count
        ),
        (0, 0, 12)
    );
    let exported = client
        .export_directory(with_token(ExportDirectoryRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .directory_yaml;
    assert!(
        exported.contains("$argon2id$"),
        "credentials export as hashes"
    );
    assert!(!exported.contains(PASSWORD));
    let round_trip = client
        .import_directory(with_token(import(&exported, false), &admin))
        .await
        .unwrap()
        .into_inner();
    // 6 roles (5 default and `everything`), 2 organisations, 4 users, 5 profiles.
    assert_eq!(
        (
            round_trip.created_count,
            round_trip.updated_count,
            round_trip.unchanged_count
        ),
        (0, 0, 17)
    );
    let exported_again = client
        .export_directory(with_token(ExportDirectoryRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .directory_yaml;
    assert_eq!(exported_again, exported);

    // A change: one new organisation, one renamed user; validate_only writes nothing.
    let changed = format!(
        "{}{}{}{}",
        DIRECTORY.split("users:").next().unwrap().trim_end(),
        "\n  - code: RXH\n    name: Brighton and Sussex\n    kind: health\n",
        "users:\n  - user_id: u-nurse\n    username: nurse.jones\n",
        "    display_name: Nurse Jones-Smith\n",
    );
    for validate_only in [true, false] {
        let counts = client
            .import_directory(with_token(import(&changed, validate_only), &admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((counts.created_count, counts.updated_count), (1, 1));
    }
    let counts = client
        .import_directory(with_token(import(&changed, false), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((counts.created_count, counts.updated_count), (0, 0));
}

async fn a_bad_directory_file_is_refused_whole(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let admin = test.admin_token().await;
    let mut client = test.org_client("RJ1", "ehr");
    let bad = r#"
version: 1
organisations:
  - code: RXH
    name: New Trust
    kind: health
users:
  - username: new.user
    display_name: New
    initial_credential: correct horse battery
    role_profiles:
      - organisation: NOWHERE1
        role: clinician
"#;
    let status = client
        .import_directory(with_token(import(bad, false), &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<_> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["users[0].role_profiles[0].organisation"]);
    // Nothing was written: the organisation of the same file is not there.
    let status = test
        .service_client("attendance")
        .get_organisation(GetOrganisationRequest {
            code: Some(OdsCode {
                value: "RXH".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    for (yaml, field) in [
        ("version: 2\n", "directory_yaml"),
        ("version: 1\nplanets: []\n", "directory_yaml"),
        (
            "version: 1\norganisations:\n  - code: E1234\n    name: X\n    kind: local_authority\n",
            "organisations[0].contacts",
        ),
    ] {
        let status = client
            .import_directory(with_token(import(yaml, false), &admin))
            .await
            .unwrap_err();
        let violations = cpis_mesh::error::field_violations(&status);
        assert_eq!(violations[0].field, field, "{yaml}: {status:?}");
    }
}

async fn users_and_role_profiles_are_administered(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let admin = test.admin_token().await;
    let mut client = test.org_client("RJ1", "ehr");
    let user = User {
        username: "New.Doctor".into(),
        display_name: "Dr New".into(),
        ..User::default()
    };
    let create = |credential: &str| CreateUserRequest {
        user: Some(user.clone()),
        credential: credential.to_owned(),
    };
    let status = client
        .create_user(with_token(create("short"), &admin))
        .await
        .unwrap_err();
    assert_eq!(
        cpis_mesh::error::field_violations(&status)[0].field,
        "credential"
    );
    let created = client
        .create_user(with_token(create(PASSWORD), &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(created.username, "new.doctor");
    assert_eq!(created.status, UserStatus::Active as i32);
    let status = client
        .create_user(with_token(create(PASSWORD), &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    let profile = |role: &str, user_id: &str| CreateRoleProfileRequest {
        role_profile: Some(RoleProfile {
            user_id: user_id.to_owned(),
            organisation: Some(OdsCode {
                value: "rj1".into(),
            }),
            role: role.to_owned(),
            ..RoleProfile::default()
        }),
    };
    let made = client
        .create_role_profile(with_token(profile("clinician", &created.user_id), &admin))
        .await
        .unwrap()
        .into_inner()
        .role_profile
        .unwrap();
    assert_eq!(
        made.activities,
        [Activity::ChildCheck as i32, Activity::ChildView as i32]
    );
    for (request, code) in [
        (profile("clinician", &created.user_id), Code::AlreadyExists),
        (
            profile("astronaut", &created.user_id),
            Code::InvalidArgument,
        ),
        (profile("clinician", "no-such-user"), Code::NotFound),
    ] {
        let status = client
            .create_role_profile(with_token(request, &admin))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    let token = test.sign_in("new.doctor", "").await;
    assert_eq!(
        token.principal.unwrap().role_profile_id,
        made.role_profile_id
    );

    let disabled = client
        .disable_user(with_token(
            DisableUserRequest {
                user_id: created.user_id.clone(),
                reason: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(disabled.status, UserStatus::Disabled as i32);
    assert_eq!(disabled.role_profiles.len(), 1);
    let status = client
        .disable_user(with_token(
            DisableUserRequest {
                user_id: "no-such-user".into(),
                reason: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn users_and_organisations_are_listed_in_pages(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let admin = test.admin_token().await;
    let mut client = test.org_client("RJ1", "ehr");
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_users(with_token(
                ListUsersRequest {
                    organisation: None,
                    page_size: 1,
                    page_token: token.clone(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.users.into_iter().map(|u| u.username));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        names,
        ["admin.lee", "multi.role", "nurse.jones", "sw.patel"]
    );
    let authority = Some(OdsCode {
        value: "E09000007".into(),
    });
    let only = client
        .list_users(with_token(
            ListUsersRequest {
                organisation: authority.clone(),
                page_size: 0,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only.users.len(), 1);
    assert_eq!(only.users[0].role_profiles[0].role, "everything");
    let first = client
        .list_users(with_token(
            ListUsersRequest {
                organisation: None,
                page_size: 1,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_users(with_token(
            ListUsersRequest {
                organisation: authority,
                page_size: 1,
                page_token: first.next_page_token,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        cpis_mesh::error::field_violations(&status)[0].field,
        "page_token"
    );

    let mut attendance = test.service_client("attendance");
    let authorities = attendance
        .list_organisations(ListOrganisationsRequest {
            kind: OrganisationKind::LocalAuthority as i32,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(authorities.organisations.len(), 1);
    let camden = &authorities.organisations[0];
    let contacts = camden.contacts.as_ref().unwrap();
    assert_eq!(contacts.emergency_duty_phone, "020 7974 4444");
    let trust = attendance
        .get_organisation(GetOrganisationRequest {
            code: Some(OdsCode {
                value: "rj1".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .organisation
        .unwrap();
    assert_eq!(trust.kind, OrganisationKind::Health as i32);
    assert_eq!(trust.care_settings.len(), 2);
    assert_eq!(trust.care_settings[0].site, "RJ122");
    // An organisation system needs a signed-in user to read it.
    let status = client
        .get_organisation(GetOrganisationRequest {
            code: Some(OdsCode {
                value: "RJ1".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let nurse = test.sign_in("nurse.jones", "").await.access_token;
    client
        .get_organisation(with_token(
            GetOrganisationRequest {
                code: Some(OdsCode {
                    value: "E09000007".into(),
                }),
            },
            &nurse,
        ))
        .await
        .unwrap();
}

both_stores!(
    importing_a_directory_twice_changes_nothing_the_second_time,
    a_bad_directory_file_is_refused_whole,
    users_and_role_profiles_are_administered,
    users_and_organisations_are_listed_in_pages,
);
