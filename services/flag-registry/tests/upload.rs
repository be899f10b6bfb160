//! Bulk uploads, run against Postgres and SQLite: every outcome code, snapshot endings,
//! replays, corrupt files and an unreachable register applying nothing, and reports.

mod support;

use cpis_proto::common::{self, FlagKind, LocalAuthority, NhsNumber, OdsCode};
use cpis_proto::flags::{
    BulkUploadRequest, FlagRecord, GetFlagsRequest, GetUploadReportRequest, RecordOutcome,
    UploadHeader, UploadMode, UploadOutcome, UploadReport, bulk_upload_request,
    get_upload_report_request,
};
use support::*;
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
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "flags")).await;
            }
        }
    )*};
}

on_both_stores!(
    every_record_outcome_is_reported,
    a_snapshot_ends_exactly_the_omitted_flags,
    a_replayed_sequence_number_returns_the_earlier_report,
    a_mismatched_record_count_applies_nothing,
    an_unreachable_register_applies_nothing,
    an_upload_of_only_refused_records_fails,
    uploads_in_another_authoritys_name_are_denied,
    reports_can_be_read_again,
    uploads_of_several_chunks_create_replace_keep_and_end,
);

fn header(authority: &str, sequence: i64, count: i64, mode: UploadMode) -> BulkUploadRequest {
    BulkUploadRequest {
        content: Some(bulk_upload_request::Content::Header(UploadHeader {
            authority: Some(LocalAuthority {
                code: Some(OdsCode {
                    value: authority.into(),
                }),
                name: format!("Authority {authority}"),
            }),
            contacts: Some(contacts()),
            sequence_number: sequence,
            record_count: count,
            mode: mode as i32,
            file_name: "plans.csv".into(),
        })),
    }
}

fn record(case: &str, number: &str) -> FlagRecord {
    cpp(CAMDEN, case, number).record.unwrap()
}

fn message(record: FlagRecord) -> BulkUploadRequest {
    BulkUploadRequest {
        content: Some(bulk_upload_request::Content::Record(record)),
    }
}

async fn upload(
    h: &Harness,
    authority: &str,
    messages: Vec<BulkUploadRequest>,
) -> Result<UploadReport, tonic::Status> {
    let token = h.manager(authority);
    h.client(&format!("org:{authority}"))
        .bulk_upload(authed(&token, tokio_stream::iter(messages)))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

/// An upload of `records` in one well-formed stream.
async fn send(
    h: &Harness,
    sequence: i64,
    mode: UploadMode,
    records: Vec<FlagRecord>,
) -> UploadReport {
    let count = i64::try_from(records.len()).unwrap();
    let mut messages = vec![header(CAMDEN, sequence, count, mode)];
    messages.extend(records.into_iter().map(message));
    upload(h, CAMDEN, messages).await.unwrap()
}

async fn flags_of(h: &Harness, number: &str) -> Vec<common::Flag> {
    h.client("attendance")
        .get_flags(GetFlagsRequest {
            nhs_number: Some(NhsNumber {
                value: number.into(),
            }),
            include_history: true,
        })
        .await
        .unwrap()
        .into_inner()
        .flags
}

/// The rows of `flags` by version: `(version, count)`, in order.
async fn versions(h: &Harness) -> Vec<(i64, i64)> {
    let sql = "SELECT version, COUNT(*) FROM flags GROUP BY version ORDER BY version";
    match &h.db {
        cpis_mesh::db::Database::Postgres(pool) => {
            sqlx::query_as(sql).fetch_all(pool).await.unwrap()
        }
        cpis_mesh::db::Database::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

async fn every_record_outcome_is_reported(db: &str) {
    let h = start(db).await;
    let mut future_start = record("R-7", &nhs(3));
    future_start.start_date = Some(wire(2026, 7, 1));
    let mut no_basis = record("R-8", &nhs(4));
    no_basis.kind = FlagKind::LookedAfterChild as i32;
    let records = vec![
        record("R-1", &nhs(2)),
        record("R-2", &no_match()),
        record("R-3", &sensitive()),
        record("R-4", &inactive()),
        record("R-5", &superseded()),
        record("R-6", "123"),
        future_start,
        no_basis,
        record("R-1", &nhs(5)),
        record("R-9", &not_verified()),
    ];
    let report = send(&h, 1, UploadMode::Incremental, records).await;
    assert_eq!(report.outcome, UploadOutcome::Partial as i32);
    let outcomes: Vec<(i32, &str, &str)> = report
        .records
        .iter()
        .map(|r| {
            (
                r.outcome,
                r.case_reference.as_str(),
                r.invalid_field.as_str(),
            )
        })
        .collect();
    use RecordOutcome::*;
    assert_eq!(
        outcomes,
        [
            (Stored as i32, "", ""),
            (NoMatch as i32, "R-2", ""),
            (SensitiveRefused as i32, "R-3", ""),
            (Inactive as i32, "R-4", ""),
            (Superseded as i32, "R-5", ""),
            (Invalid as i32, "R-6", "nhs_number"),
            (Invalid as i32, "R-7", "start_date"),
            (Invalid as i32, "R-8", "looked_after_legal_basis"),
            (Invalid as i32, "R-1", "case_reference"),
            (NotVerified as i32, "R-9", ""),
        ]
    );
    assert_eq!(
        report.records[4].superseded_by.as_ref().unwrap().value,
        nhs(1)
    );
    assert_eq!(
        (
            report.stored_count,
            report.superseded_count,
            report.refused_count,
            report.invalid_count
        ),
        (2, 1, 4, 4)
    );
    assert_eq!(flags_of(&h, &nhs(2)).await.len(), 1);
    assert_eq!(flags_of(&h, &nhs(1)).await.len(), 1);
    for number in [
        no_match(),
        sensitive(),
        inactive(),
        superseded(),
        nhs(3),
        nhs(4),
        nhs(5),
    ] {
        assert!(flags_of(&h, &number).await.is_empty());
    }
    // The authority hears of the superseded and the inactive number.
    let notifications = match &h.db {
        cpis_mesh::db::Database::Postgres(pool) => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE destination = 'notification'",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
        cpis_mesh::db::Database::Sqlite(pool) => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE destination = 'notification'",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
    };
    assert_eq!(notifications, 2);
    assert!(
        h.audit_actions()
            .await
            .iter()
            .any(|(action, _)| action == "flags.upload")
    );
}

async fn a_snapshot_ends_exactly_the_omitted_flags(db: &str) {
    let h = start(db).await;
    let first = send(
        &h,
        1,
        UploadMode::Incremental,
        vec![
            record("A", &nhs(1)),
            record("B", &nhs(2)),
            record("C", &nhs(3)),
        ],
    )
    .await;
    assert_eq!(first.outcome, UploadOutcome::Success as i32);
    // Another authority's flag is none of this snapshot's business.
    let islington = h.manager(ISLINGTON);
    h.client(&format!("org:{ISLINGTON}"))
        .upsert_flag(authed(&islington, cpp(ISLINGTON, "B", &nhs(4))))
        .await
        .unwrap();

    // A kept, B omitted, C present but refused (still counts as present), D new.
    let mut refused_c = record("C", &no_match());
    refused_c.start_date = Some(wire(2026, 3, 1));
    let snapshot = send(
        &h,
        2,
        UploadMode::Snapshot,
        vec![record("A", &nhs(1)), refused_c, record("D", &nhs(5))],
    )
    .await;
    assert_eq!(snapshot.outcome, UploadOutcome::Partial as i32);
    assert_eq!(snapshot.ended_case_references, ["B"]);
    assert_eq!(
        flags_of(&h, &nhs(2)).await[0].end_date,
        Some(wire(2026, 6, 15))
    );
    for number in [nhs(1), nhs(3), nhs(4), nhs(5)] {
        let flags = flags_of(&h, &number).await;
        assert_eq!(flags.len(), 1, "{number}");
        assert_eq!(flags[0].end_date, None, "{number}");
    }
}

async fn a_replayed_sequence_number_returns_the_earlier_report(db: &str) {
    let h = start(db).await;
    let first = send(&h, 7, UploadMode::Incremental, vec![record("A", &nhs(1))]).await;
    assert!(!first.replayed);
    let again = send(&h, 7, UploadMode::Snapshot, vec![record("B", &nhs(2))]).await;
    assert!(again.replayed);
    assert_eq!(again.upload_id, first.upload_id);
    assert!(flags_of(&h, &nhs(2)).await.is_empty(), "nothing applied");
    assert_eq!(
        flags_of(&h, &nhs(1)).await[0].end_date,
        None,
        "no snapshot ending"
    );
}

async fn a_mismatched_record_count_applies_nothing(db: &str) {
    let h = start(db).await;
    let mut messages = vec![header(CAMDEN, 3, 3, UploadMode::Incremental)];
    messages.push(message(record("A", &nhs(1))));
    messages.push(message(record("B", &nhs(2))));
    let report = upload(&h, CAMDEN, messages).await.unwrap();
    assert_eq!(report.outcome, UploadOutcome::Corrupt as i32);
    assert_eq!(report.received_record_count, 2);
    assert!(flags_of(&h, &nhs(1)).await.is_empty());

    // A second header, or records before the header: corrupt too.
    let twice = vec![
        header(CAMDEN, 3, 1, UploadMode::Incremental),
        header(CAMDEN, 3, 1, UploadMode::Incremental),
        message(record("A", &nhs(1))),
    ];
    let report = upload(&h, CAMDEN, twice).await.unwrap();
    assert_eq!(report.outcome, UploadOutcome::Corrupt as i32);
    let headless = vec![message(record("A", &nhs(1)))];
    let report = upload(&h, CAMDEN, headless).await.unwrap();
    assert_eq!(report.outcome, UploadOutcome::Corrupt as i32);
    assert!(flags_of(&h, &nhs(1)).await.is_empty());

    // The sequence number was not used up.
    let report = send(&h, 3, UploadMode::Incremental, vec![record("A", &nhs(1))]).await;
    assert_eq!(report.outcome, UploadOutcome::Success as i32);
    assert!(!report.replayed);
}

async fn an_unreachable_register_applies_nothing(db: &str) {
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
    let report = send(&h, 1, UploadMode::Snapshot, vec![record("A", &nhs(1))]).await;
    assert_eq!(
        report.outcome,
        UploadOutcome::DemographicsUnavailable as i32
    );
    assert!(report.records.is_empty());
    assert!(flags_of(&h, &nhs(1)).await.is_empty());
}

async fn an_upload_of_only_refused_records_fails(db: &str) {
    let h = start(db).await;
    send(&h, 1, UploadMode::Incremental, vec![record("A", &nhs(1))]).await;
    let report = send(
        &h,
        2,
        UploadMode::Snapshot,
        vec![record("X", &no_match()), record("Y", "123")],
    )
    .await;
    assert_eq!(report.outcome, UploadOutcome::Failed as i32);
    // No snapshot ending either.
    assert_eq!(flags_of(&h, &nhs(1)).await[0].end_date, None);
}

async fn uploads_in_another_authoritys_name_are_denied(db: &str) {
    let h = start(db).await;
    let token = h.manager(ISLINGTON);
    let messages = vec![
        header(CAMDEN, 1, 1, UploadMode::Incremental),
        message(record("A", &nhs(1))),
    ];
    let status = h
        .client(&format!("org:{ISLINGTON}"))
        .bulk_upload(authed(&token, tokio_stream::iter(messages)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(flags_of(&h, &nhs(1)).await.is_empty());
}

async fn reports_can_be_read_again(db: &str) {
    let h = start(db).await;
    let sent = send(&h, 4, UploadMode::Incremental, vec![record("A", &nhs(1))]).await;
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    for key in [
        get_upload_report_request::Upload::UploadId(sent.upload_id.clone()),
        get_upload_report_request::Upload::SequenceNumber(4),
    ] {
        let report = client
            .get_upload_report(authed(
                &token,
                GetUploadReportRequest {
                    authority: Some(OdsCode {
                        value: CAMDEN.into(),
                    }),
                    upload: Some(key),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap();
        assert_eq!(report, sent);
    }
    // Another authority's upload is not found.
    let islington = h.manager(ISLINGTON);
    let status = h
        .client(&format!("org:{ISLINGTON}"))
        .get_upload_report(authed(
            &islington,
            GetUploadReportRequest {
                authority: Some(OdsCode {
                    value: ISLINGTON.into(),
                }),
                upload: Some(get_upload_report_request::Upload::UploadId(
                    sent.upload_id.clone(),
                )),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// Several chunks (of 1,000 records) in one upload, each written in one statement: a
/// case reference repeated in a later chunk, then a snapshot that changes some flags, leaves
/// the others as they are and omits the last ones.
async fn uploads_of_several_chunks_create_replace_keep_and_end(db: &str) {
    let h = start(db).await;
    let case = |i: u32| format!("R-{i:04}");
    let number = |i: u32| nhs(i % 20 + 1);
    let mut records: Vec<FlagRecord> = (0..2_500).map(|i| record(&case(i), &number(i))).collect();
    records.insert(1_500, record(&case(5), &number(6)));
    let first = send(&h, 1, UploadMode::Incremental, records).await;
    assert_eq!(first.outcome, UploadOutcome::Partial as i32);
    assert_eq!((first.stored_count, first.invalid_count), (2_500, 1));
    let repeated = &first.records[1_500];
    assert_eq!(repeated.record_index, 1_501);
    assert_eq!(repeated.case_reference, case(5));
    assert_eq!(versions(&h).await, [(1, 2_500)]);

    // Every tenth flag starts earlier; the last 100 are omitted.
    let records = (0..2_400)
        .map(|i| {
            let mut record = record(&case(i), &number(i));
            if i % 10 == 0 {
                record.start_date = Some(wire(2026, 2, 1));
            }
            record
        })
        .collect();
    let snapshot = send(&h, 2, UploadMode::Snapshot, records).await;
    assert_eq!(snapshot.outcome, UploadOutcome::Success as i32);
    assert_eq!(snapshot.stored_count, 2_400);
    let ended: Vec<String> = (2_400..2_500).map(case).collect();
    assert_eq!(snapshot.ended_case_references, ended);
    assert_eq!(versions(&h).await, [(1, 2_160), (2, 340)]);
    let uploads = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(action, _)| action == "flags.upload")
        .count();
    assert_eq!(
        uploads,
        2_500 + 1 + 2_400 + 1,
        "one per child stored, one per upload"
    );

    let flags = flags_of(&h, &number(0)).await;
    assert_eq!(flags.len(), 125);
    let of = |case: &str| flags.iter().find(|f| f.case_reference == case).unwrap();
    assert_eq!(of(&case(0)).start_date, Some(wire(2026, 2, 1)));
    assert_eq!(of(&case(0)).version, 2);
    assert_eq!(of(&case(20)).start_date, Some(wire(2026, 2, 1)));
    assert_eq!(of(&case(40)).version, 2);
    assert_eq!(of(&case(2_480)).end_date, Some(wire(2026, 6, 15)));
}
