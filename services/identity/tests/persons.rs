//! The person register over gRPC, against Postgres and SQLite: imports by stream, and the
//! trace outcome of every status.

mod support;

use cpis_domain::NhsNumber;
use cpis_proto::common::{Date, NhsNumber as WireNumber};
use cpis_proto::identity::*;
use support::{Backend, TestIdentity, with_token};
use tonic::Code;

fn wire(number: &NhsNumber) -> Option<WireNumber> {
    Some(WireNumber {
        value: number.as_str().to_owned(),
    })
}

fn dob(day: i32) -> Option<Date> {
    Some(Date {
        year: 2015,
        month: 6,
        day,
    })
}

fn person(
    number: &NhsNumber,
    status: PersonStatus,
    by: Option<&NhsNumber>,
    sensitive: bool,
) -> Person {
    Person {
        nhs_number: wire(number),
        date_of_birth: dob(1),
        status: status as i32,
        superseded_by: by.and_then(wire),
        sensitive,
    }
}

async fn import(
    test: &TestIdentity,
    batches: Vec<Vec<Person>>,
) -> Result<ImportPersonsResponse, tonic::Status> {
    let admin = test.admin_token().await;
    let messages: Vec<_> = batches
        .into_iter()
        .map(|persons| ImportPersonsRequest { persons })
        .collect();
    test.org_client("RJ1", "ehr")
        .import_persons(with_token(futures_util::stream::iter(messages), &admin))
        .await
        .map(tonic::Response::into_inner)
}

async fn trace_people_answers_each_status(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let n: Vec<NhsNumber> = cpis_identity::persons::synthetic(0, 9)
        .unwrap()
        .into_iter()
        .map(|p| p.nhs_number)
        .collect();
    let (active, old, middle, current, inactive, sensitive, to_sensitive, unknown) =
        (&n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7]);
    use PersonStatus::{Active, Inactive, Superseded};
    let register = vec![
        person(active, Active, None, false),
        person(old, Superseded, Some(middle), false),
        person(middle, Superseded, Some(current), false),
        person(current, Active, None, false),
        person(inactive, Inactive, None, false),
        person(sensitive, Active, None, true),
        person(to_sensitive, Superseded, Some(sensitive), false),
    ];
    let first = import(&test, vec![register[..3].to_vec(), register[3..].to_vec()])
        .await
        .unwrap();
    assert_eq!(
        (
            first.created_count,
            first.updated_count,
            first.unchanged_count
        ),
        (7, 0, 0)
    );
    let again = import(&test, vec![register.clone()]).await.unwrap();
    assert_eq!(
        (
            again.created_count,
            again.updated_count,
            again.unchanged_count
        ),
        (0, 0, 7)
    );

    let query = |number: &NhsNumber, day: Option<Date>| PersonTraceQuery {
        nhs_number: wire(number),
        date_of_birth: day,
    };
    let queries = vec![
        query(active, None),
        query(active, dob(1)),
        query(active, dob(2)),
        query(old, dob(1)),
        query(inactive, dob(2)),
        query(sensitive, None),
        query(to_sensitive, None),
        query(unknown, None),
        PersonTraceQuery {
            nhs_number: Some(WireNumber {
                value: "123".into(),
            }),
            date_of_birth: None,
        },
    ];
    let traces = test
        .service_client("flag-registry")
        .trace_people(TracePeopleRequest { queries })
        .await
        .unwrap()
        .into_inner()
        .traces;
    use TraceOutcome::{Inactive as Gone, Invalid, Matched, NoMatch, NotVerified, Sensitive};
    let replaced = TraceOutcome::Superseded;
    let outcomes: Vec<_> = traces.iter().map(|t| t.outcome).collect();
    let expected = [
        Matched,
        Matched,
        NotVerified,
        replaced,
        Gone,
        Sensitive,
        Sensitive,
        NoMatch,
        Invalid,
    ];
    assert_eq!(outcomes, expected.map(|o| o as i32));
    // A chain of replacements is followed to its end; nothing else leaks.
    assert_eq!(traces[3].superseded_by, wire(current));
    assert!(
        traces
            .iter()
            .filter(|t| t.outcome != replaced as i32)
            .all(|t| t.superseded_by.is_none())
    );
    assert_eq!(traces[8].nhs_number.as_ref().unwrap().value, "123");

    let one = test
        .service_client("flag-registry")
        .trace_person(TracePersonRequest {
            nhs_number: Some(WireNumber {
                value: format!(
                    "{} {} {}",
                    &current.as_str()[..3],
                    &current.as_str()[3..6],
                    &current.as_str()[6..]
                ),
            }),
            date_of_birth: None,
        })
        .await
        .unwrap()
        .into_inner()
        .trace
        .unwrap();
    assert_eq!(one.outcome, Matched as i32);
    assert_eq!(one.nhs_number, wire(current));
}

async fn bad_input_is_named(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let mut registry = test.service_client("flag-registry");
    let status = registry
        .trace_person(TracePersonRequest {
            nhs_number: Some(WireNumber {
                value: "943 476 5918".into(),
            }),
            date_of_birth: Some(Date {
                year: 2015,
                month: 2,
                day: 30,
            }),
        })
        .await
        .unwrap_err();
    let fields: Vec<_> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["nhs_number", "date_of_birth"]);
    let status = registry
        .trace_people(TracePeopleRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        cpis_mesh::error::field_violations(&status)[0].field,
        "queries"
    );

    let n: Vec<NhsNumber> = cpis_identity::persons::synthetic(100, 3)
        .unwrap()
        .into_iter()
        .map(|p| p.nhs_number)
        .collect();
    let good = person(&n[0], PersonStatus::Active, None, false);
    let mut bad = person(&n[1], PersonStatus::Active, None, false);
    bad.nhs_number = Some(WireNumber {
        value: "9999999990".into(),
    });
    let status = import(
        &test,
        vec![
            vec![good],
            vec![person(&n[2], PersonStatus::Active, None, false), bad],
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        cpis_mesh::error::field_violations(&status)[0].field,
        "persons[1].nhs_number"
    );
    // The first message stays applied, the second is not.
    let traces = registry
        .trace_people(TracePeopleRequest {
            queries: vec![
                PersonTraceQuery {
                    nhs_number: wire(&n[0]),
                    date_of_birth: None,
                },
                PersonTraceQuery {
                    nhs_number: wire(&n[2]),
                    date_of_birth: None,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .traces;
    assert_eq!(traces[0].outcome, TraceOutcome::Matched as i32);
    assert_eq!(traces[1].outcome, TraceOutcome::NoMatch as i32);
}

both_stores!(trace_people_answers_each_status, bad_input_is_named);
