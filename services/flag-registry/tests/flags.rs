//! The flag registry's contract, run against Postgres and SQLite: upserts (idempotent,
//! versioned, traced), endings, the visibility rule at its edges, listing, authorisation
//! and audit.

mod support;

use cpis_mesh::error::field_violations;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::common::{self, FlagKind, FlagState, NhsNumber, OdsCode};
use cpis_proto::flags::{
    EndFlagRequest, GetFlagsRequest, ListFlagsRequest, RecordOutcome, end_flag_request,
};
use support::*;
use tonic::Code;

/// Runs a case against a fresh Postgres database and a fresh SQLite file.
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
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "flags")).await;
            }
        }
    )*};
}

on_both_stores!(
    an_upsert_is_idempotent_by_authority_and_case_reference,
    a_stale_version_is_aborted_and_writes_nothing,
    an_authority_cannot_touch_another_authoritys_flag,
    invalid_input_names_each_field,
    each_trace_outcome_of_an_upsert,
    an_unreachable_register_stores_nothing,
    ending_a_flag,
    the_visibility_windows_at_their_edges,
    get_flags_is_served_only_to_attendance,
    list_flags_pages_and_filters,
    every_read_and_write_is_audited,
);

fn get(number: &str, include_history: bool) -> GetFlagsRequest {
    GetFlagsRequest {
        nhs_number: Some(NhsNumber {
            value: number.into(),
        }),
        include_history,
    }
}

async fn flags_of(h: &Harness, number: &str, history: bool) -> Vec<common::Flag> {
    h.client("attendance")
        .get_flags(get(number, history))
        .await
        .unwrap()
        .into_inner()
        .flags
}

async fn an_upsert_is_idempotent_by_authority_and_case_reference(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    let first = client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &nhs(1))))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    assert_eq!(first.outcome, RecordOutcome::Stored as i32);
    let stored = first.flag.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.state, FlagState::Current as i32);
    assert_eq!(stored.updated_by, "u-social");

    // The same record again: stored once, version unchanged.
    let again = client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &nhs(1))))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    let again = again.flag.unwrap();
    assert_eq!(
        (again.flag_id.as_str(), again.version),
        (stored.flag_id.as_str(), 1)
    );

    // A change replaces it at the next version.
    let mut changed = cpp(CAMDEN, "C-1", &nhs(1));
    changed.contacts.as_mut().unwrap().emergency_duty_phone = "020 7974 9999".into();
    let changed = client
        .upsert_flag(authed(&token, changed))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    assert_eq!(
        (changed.flag_id.as_str(), changed.version),
        (stored.flag_id.as_str(), 2)
    );
    let shown = flags_of(&h, &nhs(1), false).await;
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0].contacts.as_ref().unwrap().emergency_duty_phone,
        "020 7974 9999"
    );

    // Another case reference is another flag, even for the same child.
    let other = client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-2", &nhs(1))))
        .await
        .unwrap()
        .into_inner();
    assert!(other.created);
    assert_eq!(flags_of(&h, &nhs(1), false).await.len(), 2);
}

async fn a_stale_version_is_aborted_and_writes_nothing(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    let mut create = cpp(CAMDEN, "C-1", &nhs(2));
    create.expected_version = Some(0);
    client
        .upsert_flag(authed(&token, create.clone()))
        .await
        .unwrap();
    // 0 means "must not exist yet".
    let status = client
        .upsert_flag(authed(&token, create))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");

    let mut change = cpp(CAMDEN, "C-1", &nhs(2));
    change.contacts.as_mut().unwrap().secure_email = "new@camden.gov.uk".into();
    change.expected_version = Some(1);
    let v2 = client
        .upsert_flag(authed(&token, change.clone()))
        .await
        .unwrap();
    assert_eq!(v2.into_inner().flag.unwrap().version, 2);

    // Version 1 is stale now.
    change.contacts.as_mut().unwrap().secure_email = "stale@camden.gov.uk".into();
    let status = client
        .upsert_flag(authed(&token, change))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let shown = flags_of(&h, &nhs(2), false).await;
    assert_eq!(shown[0].version, 2);
    assert_eq!(
        shown[0].contacts.as_ref().unwrap().secure_email,
        "new@camden.gov.uk"
    );

    // EndFlag checks the version too.
    let end = EndFlagRequest {
        authority: Some(OdsCode {
            value: CAMDEN.into(),
        }),
        target: Some(end_flag_request::Target::CaseReference("C-1".into())),
        end_date: Some(wire(2026, 6, 1)),
        delete_date: None,
        expected_version: Some(1),
    };
    let status = client.end_flag(authed(&token, end)).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(flags_of(&h, &nhs(2), false).await[0].end_date, None);
}

async fn an_authority_cannot_touch_another_authoritys_flag(db: &str) {
    let h = start(db).await;
    let camden = h.manager(CAMDEN);
    let islington = h.manager(ISLINGTON);
    let flag = h
        .client(&format!("org:{CAMDEN}"))
        .upsert_flag(authed(&camden, cpp(CAMDEN, "C-1", &nhs(3))))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    let mut client = h.client(&format!("org:{ISLINGTON}"));

    // Writing in Camden's name: denied before anything is looked up.
    let status = client
        .upsert_flag(authed(&islington, cpp(CAMDEN, "C-1", &nhs(3))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A user without flag.manage, even of Camden.
    let viewer = h.token("u-view", CAMDEN, &["child.view"]);
    let status = client
        .upsert_flag(authed(&viewer, cpp(CAMDEN, "C-9", &nhs(3))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // No token at all.
    let status = client
        .upsert_flag(tonic::Request::new(cpp(CAMDEN, "C-9", &nhs(3))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Ending Camden's flag by its id, in Islington's own name: not found, not revealed.
    let end = EndFlagRequest {
        authority: Some(OdsCode {
            value: ISLINGTON.into(),
        }),
        target: Some(end_flag_request::Target::FlagId(flag.flag_id.clone())),
        end_date: Some(wire(2026, 6, 1)),
        delete_date: None,
        expected_version: None,
    };
    let status = client.end_flag(authed(&islington, end)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // The same case reference in Islington is Islington's own, separate flag.
    let own = client
        .upsert_flag(authed(&islington, cpp(ISLINGTON, "C-1", &nhs(3))))
        .await
        .unwrap()
        .into_inner();
    assert!(own.created);
    assert_ne!(own.flag.unwrap().flag_id, flag.flag_id);
    // Islington's list holds only its own.
    let listed = client
        .list_flags(authed(
            &islington,
            ListFlagsRequest {
                authority: Some(OdsCode {
                    value: ISLINGTON.into(),
                }),
                ..ListFlagsRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .flags;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .authority
            .as_ref()
            .unwrap()
            .code
            .as_ref()
            .unwrap()
            .value,
        ISLINGTON
    );
    // Camden's flag is untouched.
    let camden_flags = flags_of(&h, &nhs(3), false).await;
    assert_eq!(camden_flags.len(), 2);
    assert!(camden_flags.iter().all(|f| f.end_date.is_none()));
}

async fn invalid_input_names_each_field(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    let mut bad = cpp(CAMDEN, "C-1", &nhs(4));
    let record = bad.record.as_mut().unwrap();
    record.kind = FlagKind::LookedAfterChild as i32; // without its legal basis
    record.start_date = Some(wire(2026, 6, 16)); // tomorrow
    record.nhs_number = Some(NhsNumber {
        value: "9434765918".into(), // wrong check digit
    });
    bad.contacts.as_mut().unwrap().emergency_duty_phone = String::new();
    let status = client.upsert_flag(authed(&token, bad)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    for field in [
        "record.looked_after_legal_basis",
        "record.start_date",
        "record.nhs_number",
        "contacts.emergency_duty_phone",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    // Nothing was written.
    assert!(flags_of(&h, &nhs(4), true).await.is_empty());
}

async fn each_trace_outcome_of_an_upsert(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    for (number, outcome) in [
        (no_match(), RecordOutcome::NoMatch),
        (sensitive(), RecordOutcome::SensitiveRefused),
        (inactive(), RecordOutcome::Inactive),
        (not_verified(), RecordOutcome::NotVerified),
    ] {
        let answer = client
            .upsert_flag(authed(&token, cpp(CAMDEN, &format!("R-{number}"), &number)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.outcome, outcome as i32);
        assert!(answer.flag.is_none());
        assert!(flags_of(&h, &number, true).await.is_empty());
    }
    // Superseded: stored under the new number.
    let answer = client
        .upsert_flag(authed(&token, cpp(CAMDEN, "S-1", &superseded())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outcome, RecordOutcome::Superseded as i32);
    let flag = answer.flag.unwrap();
    assert_eq!(flag.nhs_number.unwrap().value, nhs(1));
    assert!(flags_of(&h, &superseded(), true).await.is_empty());
    assert_eq!(flags_of(&h, &nhs(1), false).await.len(), 1);
}

async fn an_unreachable_register_stores_nothing(db: &str) {
    let mut register = register();
    register.unavailable = true;
    let h = start_with(
        db,
        Options {
            register,
            ..Options::default()
        },
    )
    .await;
    let token = h.manager(CAMDEN);
    let status = h
        .client(&format!("org:{CAMDEN}"))
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &nhs(5))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(flags_of(&h, &nhs(5), true).await.is_empty());
}

fn end_request(case: &str, end: common::Date, delete: Option<common::Date>) -> EndFlagRequest {
    EndFlagRequest {
        authority: Some(OdsCode {
            value: CAMDEN.into(),
        }),
        target: Some(end_flag_request::Target::CaseReference(case.into())),
        end_date: Some(end),
        delete_date: delete,
        expected_version: None,
    }
}

async fn ending_a_flag(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &nhs(6))))
        .await
        .unwrap();
    // Before the start date: invalid.
    let status = client
        .end_flag(authed(&token, end_request("C-1", wire(2026, 2, 1), None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        field_violations(&status)
            .iter()
            .any(|v| v.field == "end_date")
    );

    let ended = client
        .end_flag(authed(&token, end_request("C-1", wire(2026, 6, 1), None)))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    assert_eq!(ended.version, 2);
    assert_eq!(ended.end_date, Some(wire(2026, 6, 1)));
    assert_eq!(ended.state, FlagState::RecentlyEnded as i32);
    // Again with the same dates: nothing changes.
    let again = client
        .end_flag(authed(&token, end_request("C-1", wire(2026, 6, 1), None)))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    assert_eq!(again.version, 2);
    let shown = flags_of(&h, &nhs(6), false).await;
    assert_eq!(shown[0].state, FlagState::RecentlyEnded as i32);

    // A delete date purges the record from that day on.
    client
        .end_flag(authed(
            &token,
            end_request("C-1", wire(2026, 6, 1), Some(wire(2026, 6, 20))),
        ))
        .await
        .unwrap();
    assert_eq!(flags_of(&h, &nhs(6), true).await.len(), 1);
    h.clock.pin(date(2026, 6, 20));
    assert!(flags_of(&h, &nhs(6), true).await.is_empty());

    // An unknown flag.
    let status = client
        .end_flag(authed(&token, end_request("NOPE", wire(2026, 6, 1), None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn the_visibility_windows_at_their_edges(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    // A CPP ending on 31 January 2025 (12 months): recently ended through 30 January 2026.
    h.clock.pin(date(2025, 1, 1));
    let mut plan = cpp(CAMDEN, "CPP-1", &nhs(7));
    plan.record.as_mut().unwrap().start_date = Some(wire(2024, 6, 1));
    client.upsert_flag(authed(&token, plan)).await.unwrap();
    client
        .end_flag(authed(
            &token,
            end_request("CPP-1", wire(2025, 1, 31), None),
        ))
        .await
        .unwrap();
    let state_on = |y, m, d| {
        let h = &h;
        async move {
            h.clock.pin(date(y, m, d));
            let shown = flags_of(h, &nhs(7), false).await;
            let all = flags_of(h, &nhs(7), true).await;
            (shown.first().map(|f| f.state), all.first().map(|f| f.state))
        }
    };
    let current = Some(FlagState::Current as i32);
    let recent = Some(FlagState::RecentlyEnded as i32);
    let history = Some(FlagState::History as i32);
    assert_eq!(state_on(2025, 1, 30).await, (current, current));
    assert_eq!(state_on(2025, 1, 31).await, (recent, recent));
    assert_eq!(state_on(2026, 1, 30).await, (recent, recent));
    assert_eq!(state_on(2026, 1, 31).await, (None, history));

    // A UCPP ending on 1 March 2026 (28 days): recently ended 1–28 March, then history.
    h.clock.pin(date(2026, 2, 1));
    let mut unborn = cpp(CAMDEN, "UCPP-1", &nhs(8));
    let record = unborn.record.as_mut().unwrap();
    record.kind = FlagKind::UnbornChildProtectionPlan as i32;
    record.start_date = Some(wire(2026, 1, 10));
    record.expected_delivery_date = Some(wire(2026, 5, 1));
    client.upsert_flag(authed(&token, unborn)).await.unwrap();
    client
        .end_flag(authed(
            &token,
            end_request("UCPP-1", wire(2026, 3, 1), None),
        ))
        .await
        .unwrap();
    let ucpp_on = |y, m, d| {
        let h = &h;
        async move {
            h.clock.pin(date(y, m, d));
            flags_of(h, &nhs(8), false).await.first().map(|f| f.state)
        }
    };
    assert_eq!(ucpp_on(2026, 2, 28).await, current);
    assert_eq!(ucpp_on(2026, 3, 1).await, recent);
    assert_eq!(ucpp_on(2026, 3, 28).await, recent);
    assert_eq!(ucpp_on(2026, 3, 29).await, None);
}

async fn get_flags_is_served_only_to_attendance(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    h.client(&format!("org:{CAMDEN}"))
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &nhs(9))))
        .await
        .unwrap();
    for peer in [format!("org:{CAMDEN}"), "notification".to_owned()] {
        let status = h
            .client(&peer)
            .get_flags(get(&nhs(9), false))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{peer}");
    }
    // No flag is an empty answer, not NOT_FOUND.
    let answer = h
        .client("attendance")
        .get_flags(get(&nhs(10), false))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.flags.is_empty());
    assert_eq!(answer.evaluation_date, Some(wire(2026, 6, 15)));
    // A malformed number.
    let status = h
        .client("attendance")
        .get_flags(get("123", false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn list_flags_pages_and_filters(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    for i in 1..=5u32 {
        let mut request = cpp(CAMDEN, &format!("L-{i}"), &nhs(i));
        if i == 4 {
            let record = request.record.as_mut().unwrap();
            record.kind = FlagKind::LookedAfterChild as i32;
            record.looked_after_legal_basis =
                common::LookedAfterLegalBasis::Section20VoluntaryAgreement as i32;
        }
        client.upsert_flag(authed(&token, request)).await.unwrap();
    }
    client
        .end_flag(authed(&token, end_request("L-2", wire(2026, 6, 1), None)))
        .await
        .unwrap();
    let list = |request: ListFlagsRequest| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            client
                .list_flags(authed(
                    &token,
                    ListFlagsRequest {
                        authority: Some(OdsCode {
                            value: CAMDEN.into(),
                        }),
                        ..request
                    },
                ))
                .await
        }
    };
    // Pages of two: every flag once, in case-reference order.
    let mut seen = Vec::new();
    let mut token_ = String::new();
    let mut pages = 0;
    loop {
        let page = list(ListFlagsRequest {
            page_size: 2,
            page_token: token_.clone(),
            ..ListFlagsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
        pages += 1;
        assert!(page.flags.len() <= 2);
        seen.extend(page.flags.into_iter().map(|f| f.case_reference));
        if page.next_page_token.is_empty() {
            break;
        }
        token_ = page.next_page_token;
    }
    assert_eq!(seen, ["L-1", "L-2", "L-3", "L-4", "L-5"]);
    assert_eq!(pages, 3);

    let refs = |flags: Vec<common::Flag>| {
        flags
            .into_iter()
            .map(|f| f.case_reference)
            .collect::<Vec<_>>()
    };
    let lac = list(ListFlagsRequest {
        kinds: vec![FlagKind::LookedAfterChild as i32],
        ..ListFlagsRequest::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(refs(lac.flags), ["L-4"]);
    let ended = list(ListFlagsRequest {
        states: vec![FlagState::RecentlyEnded as i32],
        ..ListFlagsRequest::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(refs(ended.flags), ["L-2"]);
    let one = list(ListFlagsRequest {
        nhs_number: Some(NhsNumber { value: nhs(3) }),
        ..ListFlagsRequest::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(refs(one.flags), ["L-3"]);
    let by_case = list(ListFlagsRequest {
        case_reference: "L-5".into(),
        ..ListFlagsRequest::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(refs(by_case.flags), ["L-5"]);

    let status = list(ListFlagsRequest {
        page_token: "not-a-token!".into(),
        ..ListFlagsRequest::default()
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = list(ListFlagsRequest {
        page_size: -1,
        ..ListFlagsRequest::default()
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn every_read_and_write_is_audited(db: &str) {
    let h = start(db).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &nhs(11))))
        .await
        .unwrap();
    client
        .end_flag(authed(&token, end_request("C-1", wire(2026, 6, 1), None)))
        .await
        .unwrap();
    // Attendance passes the user's token on: the event names the user.
    let nurse = h.token("u-nurse", "RJ1", &["child.check"]);
    h.client("attendance")
        .get_flags(authed(&nurse, get(&nhs(11), false)))
        .await
        .unwrap();
    // A check's read is queued for a shared commit: it is recorded before what follows.
    h.await_audit_events(3).await;
    client
        .list_flags(authed(
            &token,
            ListFlagsRequest {
                authority: Some(OdsCode {
                    value: CAMDEN.into(),
                }),
                ..ListFlagsRequest::default()
            },
        ))
        .await
        .unwrap();
    let islington = h.manager(ISLINGTON);
    client
        .upsert_flag(authed(&islington, cpp(CAMDEN, "C-2", &nhs(11))))
        .await
        .unwrap_err();
    let success = AuditOutcome::Success as i32;
    assert_eq!(
        h.audit_actions().await,
        [
            ("flags.upsert".to_owned(), success),
            ("flags.end".to_owned(), success),
            ("flags.get".to_owned(), success),
            ("flags.list".to_owned(), success),
            ("flags.upsert".to_owned(), AuditOutcome::Denied as i32),
        ]
    );
    let events = h.audit_events().await;
    let read = &events[2];
    assert_eq!(read.nhs_number.as_ref().unwrap().value, nhs(11));
    match read.actor.as_ref().unwrap().kind.as_ref().unwrap() {
        cpis_proto::audit::actor::Kind::User(user) => assert_eq!(user.user_id, "u-nurse"),
        other => panic!("the reader is not named: {other:?}"),
    }
}
