//! Who may query what, against Postgres and SQLite, with the real flag registry in process
//! on a real socket: a local authority sees the accesses to the children it flags and no
//! other, a health organisation its own events, a national privacy office everything; every
//! refusal is itself in the log.

mod support;

use cpis_proto::audit::{AuditOutcome, QueryEventsRequest, QueryEventsResponse};
use cpis_proto::common::{NhsNumber, OdsCode};
use support::{CHILD, CHILDREN, Flags, Scoped, event, events};
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
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "audit")).await;
            }
        }
    )*};
}

on_both_stores!(
    a_local_authority_sees_the_accesses_to_a_child_it_flags,
    a_local_authority_is_refused_alike_for_an_unflagged_child_and_another_authoritys,
    a_local_authority_must_name_a_child,
    a_national_auditor_queries_the_whole_log,
    a_health_organisation_sees_only_its_own_events,
    a_token_without_the_organisation_kind_gets_the_narrowest_scope,
    a_local_authority_query_is_unavailable_while_the_flag_registry_is_down,
);

const CAMDEN: &str = "E09000007";
const ISLINGTON: &str = "E09000019";

fn request(token: &str, body: QueryEventsRequest) -> tonic::Request<QueryEventsRequest> {
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn about(child: &str) -> QueryEventsRequest {
    QueryEventsRequest {
        nhs_number: Some(NhsNumber {
            value: child.into(),
        }),
        ..Default::default()
    }
}

/// Three checks of `CHILD` at RJ1, one of `CHILDREN[1]` and one of `CHILDREN[2]` at RJ1, and
/// one check of `CHILD` at another trust, RRV.
async fn accesses(s: &Scoped) {
    let mut all = events(3);
    for (i, child) in [(3, CHILDREN[1]), (4, CHILDREN[2])] {
        let mut e = event(i);
        e.nhs_number = Some(NhsNumber {
            value: child.into(),
        });
        all.push(e);
    }
    let mut elsewhere = event(5);
    elsewhere.organisation = Some(OdsCode {
        value: "RRV".into(),
    });
    all.push(elsewhere);
    s.audit.append(all).await;
}

/// The `audit.query` events of the log, as the national office sees them.
async fn queries_recorded(s: &Scoped) -> Vec<cpis_proto::audit::AuditEvent> {
    let national = s.audit.token(&["audit.read"]);
    let found = s
        .audit
        .client("org:privacy-portal")
        .query_events(request(
            &national,
            QueryEventsRequest {
                action: "audit.query".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    found.entries.into_iter().filter_map(|e| e.event).collect()
}

fn children_of(found: &QueryEventsResponse) -> Vec<String> {
    found
        .entries
        .iter()
        .map(|e| {
            e.event
                .as_ref()
                .unwrap()
                .nhs_number
                .as_ref()
                .unwrap()
                .value
                .clone()
        })
        .collect()
}

async fn a_local_authority_sees_the_accesses_to_a_child_it_flags(db: &str) {
    let s = support::start_scoped(db, Flags::Up).await;
    accesses(&s).await;
    s.flag(CAMDEN, "CAM-1", CHILD).await;
    let camden = s
        .audit
        .token_of(CAMDEN, Some("local_authority"), &["audit.read"]);
    let mut client = s.audit.org_client(CAMDEN, "case-system");
    let found = client
        .query_events(request(&camden, about(CHILD)))
        .await
        .unwrap()
        .into_inner();
    // Every access to the child, at whichever organisation.
    assert_eq!(children_of(&found), [CHILD; 4]);
    let organisations: Vec<String> = found
        .entries
        .iter()
        .map(|e| {
            e.event
                .as_ref()
                .unwrap()
                .organisation
                .clone()
                .unwrap()
                .value
        })
        .collect();
    assert_eq!(organisations, ["RJ1", "RJ1", "RJ1", "RRV"]);
    // Other filters still apply within the child.
    let found = client
        .query_events(request(
            &camden,
            QueryEventsRequest {
                organisation: Some(OdsCode {
                    value: "RRV".into(),
                }),
                ..about(CHILD)
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.entries.len(), 1);

    let recorded = queries_recorded(&s).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(
        recorded
            .iter()
            .all(|e| e.outcome == AuditOutcome::Success as i32
                && e.organisation.as_ref().unwrap().value == CAMDEN
                && e.nhs_number.as_ref().unwrap().value == CHILD)
    );
}

async fn a_local_authority_is_refused_alike_for_an_unflagged_child_and_another_authoritys(
    db: &str,
) {
    let s = support::start_scoped(db, Flags::Up).await;
    accesses(&s).await;
    s.flag(CAMDEN, "CAM-1", CHILD).await;
    s.flag(ISLINGTON, "ISL-1", CHILDREN[2]).await;
    let camden = s
        .audit
        .token_of(CAMDEN, Some("local_authority"), &["audit.read"]);
    let mut client = s.audit.org_client(CAMDEN, "case-system");
    let unflagged = client
        .query_events(request(&camden, about(CHILDREN[1])))
        .await
        .unwrap_err();
    let islingtons = client
        .query_events(request(&camden, about(CHILDREN[2])))
        .await
        .unwrap_err();
    assert_eq!(unflagged.code(), Code::PermissionDenied, "{unflagged:?}");
    // Nothing tells the two apart.
    assert_eq!(islingtons.code(), unflagged.code());
    assert_eq!(islingtons.message(), unflagged.message());
    // Islington, which does flag that child, is answered.
    let islington = s
        .audit
        .token_of(ISLINGTON, Some("local_authority"), &["audit.read"]);
    let found = s
        .audit
        .org_client(ISLINGTON, "case-system")
        .query_events(request(&islington, about(CHILDREN[2])))
        .await
        .unwrap()
        .into_inner();
    // The check, and Camden's refused query about the child: both accesses to its record.
    assert_eq!(children_of(&found), [CHILDREN[2]; 2]);
    let actions: Vec<&str> = found
        .entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().action.as_str())
        .collect();
    assert_eq!(actions, ["attendance.check", "audit.query"]);

    // Both refusals are in the log, as denied, naming the child asked about.
    let recorded = queries_recorded(&s).await;
    let denied: Vec<&str> = recorded
        .iter()
        .filter(|e| e.outcome == AuditOutcome::Denied as i32)
        .map(|e| e.nhs_number.as_ref().unwrap().value.as_str())
        .collect();
    assert_eq!(denied, [CHILDREN[1], CHILDREN[2]]);
    assert!(
        recorded
            .iter()
            .filter(|e| e.outcome == AuditOutcome::Denied as i32)
            .all(
                |e| e.organisation.as_ref().unwrap().value == CAMDEN && e.reason.contains("denied")
            )
    );
}

async fn a_local_authority_must_name_a_child(db: &str) {
    let s = support::start_scoped(db, Flags::Up).await;
    accesses(&s).await;
    s.flag(CAMDEN, "CAM-1", CHILD).await;
    let camden = s
        .audit
        .token_of(CAMDEN, Some("local_authority"), &["audit.read"]);
    let status = s
        .audit
        .org_client(CAMDEN, "case-system")
        .query_events(request(
            &camden,
            QueryEventsRequest {
                action: "attendance.check".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let fields: Vec<String> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["nhs_number"]);
}

async fn a_national_auditor_queries_the_whole_log(db: &str) {
    let s = support::start_scoped(db, Flags::Up).await;
    accesses(&s).await;
    // Whatever kind its token names, or none: the office is national by configuration.
    for kind in [None, Some("health")] {
        let national = s.audit.token_of("X26", kind, &["audit.read"]);
        let found = s
            .audit
            .client("org:privacy-portal")
            .query_events(request(
                &national,
                QueryEventsRequest {
                    action: "attendance.check".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.entries.len(), 6);
        let found = s
            .audit
            .client("org:privacy-portal")
            .query_events(request(
                &national,
                QueryEventsRequest {
                    action: "attendance.check".into(),
                    ..about(CHILDREN[1])
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(children_of(&found), [CHILDREN[1]]);
    }
}

async fn a_health_organisation_sees_only_its_own_events(db: &str) {
    let s = support::start_scoped(db, Flags::Up).await;
    accesses(&s).await;
    let trust = s.audit.token_of("RRV", Some("health"), &["audit.read"]);
    let mut client = s.audit.org_client("RRV", "privacy-portal");
    // No organisation named: its own is forced.
    let found = client
        .query_events(request(&trust, QueryEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let organisations: Vec<String> = found
        .entries
        .iter()
        .map(|e| {
            e.event
                .as_ref()
                .unwrap()
                .organisation
                .clone()
                .unwrap()
                .value
        })
        .collect();
    assert_eq!(organisations, ["RRV"]);
    // By child: still only its own organisation's accesses.
    let found = client
        .query_events(request(&trust, about(CHILD)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.entries.len(), 1);
    // Naming another organisation is refused, and audited.
    let status = client
        .query_events(request(
            &trust,
            QueryEventsRequest {
                organisation: Some(OdsCode {
                    value: "RJ1".into(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let recorded = queries_recorded(&s).await;
    let outcomes: Vec<i32> = recorded.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AuditOutcome::Success as i32,
            AuditOutcome::Success as i32,
            AuditOutcome::Denied as i32
        ]
    );
}

async fn a_token_without_the_organisation_kind_gets_the_narrowest_scope(db: &str) {
    let s = support::start_scoped(db, Flags::Up).await;
    accesses(&s).await;
    s.flag(CAMDEN, "CAM-1", CHILD).await;
    // A trust's old token: it holds no flag, so it is refused even for its own accesses.
    let old = s.audit.token_of("RJ1", None, &["audit.read"]);
    let status = s
        .audit
        .org_client("RJ1", "privacy-portal")
        .query_events(request(&old, about(CHILD)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // An authority's old token: its flagged child, and only its own organisation's events
    // about it (none here).
    let old = s.audit.token_of(CAMDEN, None, &["audit.read"]);
    let found = s
        .audit
        .org_client(CAMDEN, "case-system")
        .query_events(request(&old, about(CHILD)))
        .await
        .unwrap()
        .into_inner();
    assert!(found.entries.is_empty(), "{found:?}");
}

async fn a_local_authority_query_is_unavailable_while_the_flag_registry_is_down(db: &str) {
    let s = support::start_scoped(db, Flags::Down).await;
    accesses(&s).await;
    let camden = s
        .audit
        .token_of(CAMDEN, Some("local_authority"), &["audit.read"]);
    let status = s
        .audit
        .org_client(CAMDEN, "case-system")
        .query_events(request(&camden, about(CHILD)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("flag registry"), "{status:?}");
    // The national office needs no flag registry; it sees the failed attempt.
    let recorded = queries_recorded(&s).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].outcome, AuditOutcome::Failed as i32);
    assert_eq!(recorded[0].nhs_number.as_ref().unwrap().value, CHILD);
}
