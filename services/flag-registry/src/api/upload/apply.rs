//! Validating, tracing and applying the records of a well-formed upload.

use std::collections::HashSet;

use cpis_domain::{FileOutcome, FlagDetails, RecordOutcome};
use cpis_mesh::ApiError;
use cpis_mesh::outbox::NewOutboxEvent;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::common;
use cpis_proto::flags::{
    BulkUploadResponse, FlagRecord, UploadHeader, UploadMode, UploadOutcome, UploadRecordResult,
    UploadReport,
};
use cpis_proto::identity::PersonTraceQuery;
use cpis_proto::notification::{
    NhsNumberChangeNotice, NotificationEvent, NotificationKind, notification_event,
};
use prost::Message;
use time::OffsetDateTime;

use super::{Upload, replayed};
use crate::api::FlagRegistryState;
use crate::audit::{UPLOAD, timestamp};
use crate::convert;
use crate::demographics::{self, MAX_BATCH, wire_outcome};
use crate::store::{StoreError, UploadChanges, UploadRecord, micros};

/// The FlagRecord field a domain field is sent in.
fn record_field(field: &str) -> &str {
    match field {
        "legal_basis" => "looked_after_legal_basis",
        "expected_delivery" => "expected_delivery_date",
        other => other,
    }
}

/// Validates, traces and applies the records of a well-formed upload.
pub(super) async fn apply(
    state: &FlagRegistryState,
    mut upload: Upload,
    header: &UploadHeader,
    records: Vec<FlagRecord>,
) -> Result<BulkUploadResponse, ApiError> {
    let today = state.clock.today();
    let mut outcomes: Vec<Option<RecordOutcome>> = Vec::with_capacity(records.len());
    let mut valid: Vec<Option<(FlagDetails, Option<common::Date>)>> = Vec::new();
    let mut seen = HashSet::new();
    let mut present = HashSet::new();
    for record in &records {
        present.insert(record.case_reference.trim().to_owned());
        let mut violations = Vec::new();
        let draft = convert::draft(
            header.authority.as_ref(),
            header.contacts.as_ref(),
            record,
            &mut violations,
        );
        let date_of_birth = convert::optional_date(
            "date_of_birth",
            record.date_of_birth.as_ref(),
            &mut violations,
        );
        if draft.start_date.is_some_and(|start| start > today) {
            violations.push(cpis_domain::FieldViolation::new(
                "start_date",
                "must not be later than today",
            ));
        }
        let details = draft.validate().map_err(|invalid| {
            violations.extend(invalid);
        });
        if !seen.insert(record.case_reference.trim().to_owned()) {
            violations.push(cpis_domain::FieldViolation::new(
                "case_reference",
                "is repeated in the upload",
            ));
        }
        match (details, violations.first()) {
            (Ok(details), None) => {
                outcomes.push(None);
                valid.push(Some((details, date_of_birth.map(convert::wire_date))));
            }
            (_, first) => {
                let first = first
                    .cloned()
                    .unwrap_or_else(|| cpis_domain::FieldViolation::new("record", "is invalid"));
                outcomes.push(Some(RecordOutcome::Invalid {
                    field: record_field(&first.field).to_owned(),
                    reason: first.description,
                }));
                valid.push(None);
            }
        }
    }

    // Trace the valid records in batches.
    let to_trace: Vec<usize> = (0..valid.len()).filter(|i| valid[*i].is_some()).collect();
    let mut stored: Vec<Option<FlagDetails>> = vec![None; valid.len()];
    for batch in to_trace.chunks(MAX_BATCH) {
        let queries = batch
            .iter()
            .filter_map(|i| valid[*i].as_ref())
            .map(|(details, dob)| PersonTraceQuery {
                nhs_number: Some(common::NhsNumber {
                    value: details.subject().as_str().to_owned(),
                }),
                date_of_birth: *dob,
            })
            .collect();
        let traces = match state.demographics.trace(queries).await {
            Ok(traces) => traces,
            Err(e) => {
                let why = e.to_string();
                let outcome = UploadOutcome::DemographicsUnavailable;
                return upload.refuse(state, outcome, &why, false).await;
            }
        };
        for (i, trace) in batch.iter().zip(traces) {
            let outcome = demographics::outcome(&trace);
            let details = valid[*i].take().map(|(details, _)| details);
            stored[*i] = match (&outcome, details) {
                (RecordOutcome::Stored, Some(details)) => Some(details),
                (RecordOutcome::Superseded { stored_under }, Some(details)) => {
                    Some(details.with_subject(*stored_under))
                }
                _ => None,
            };
            outcomes[*i] = Some(outcome);
        }
    }
    let outcomes: Vec<RecordOutcome> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(RecordOutcome::NoMatch))
        .collect();

    // The report's records and counts, and the authority's notifications.
    let mut notifications = Vec::new();
    for (i, (record, outcome)) in records.iter().zip(&outcomes).enumerate() {
        let number = record.nhs_number.clone();
        let notice =
            |kind: NotificationKind, superseded_by: Option<common::NhsNumber>| NotificationEvent {
                event_id: String::new(),
                authority: Some(common::OdsCode {
                    value: upload.authority.as_str().to_owned(),
                }),
                kind: kind as i32,
                occur_time: Some(timestamp(OffsetDateTime::now_utc())),
                trace_context: None,
                payload: Some(notification_event::Payload::NhsNumberChange(
                    NhsNumberChangeNotice {
                        nhs_number: number.clone(),
                        superseded_by,
                        case_reference: record.case_reference.clone(),
                        upload_id: upload.report.upload_id.clone(),
                        sequence_number: header.sequence_number,
                    },
                )),
            };
        let mut result = UploadRecordResult {
            record_index: i64::try_from(i + 1).unwrap_or(i64::MAX),
            outcome: wire_outcome(outcome) as i32,
            ..UploadRecordResult::default()
        };
        match outcome {
            RecordOutcome::Stored => upload.report.stored_count += 1,
            RecordOutcome::Superseded { stored_under } => {
                upload.report.stored_count += 1;
                upload.report.superseded_count += 1;
                let new = common::NhsNumber {
                    value: stored_under.as_str().to_owned(),
                };
                result.superseded_by = Some(new.clone());
                notifications.push(notice(NotificationKind::NhsNumberSuperseded, Some(new)));
            }
            RecordOutcome::Invalid { field, reason } => {
                upload.report.invalid_count += 1;
                result.invalid_field = field.clone();
                result.message = format!("{field} {reason}");
            }
            refused => {
                upload.report.refused_count += 1;
                if matches!(refused, RecordOutcome::Inactive) {
                    notifications.push(notice(NotificationKind::NhsNumberInactive, None));
                }
            }
        }
        if !matches!(outcome, RecordOutcome::Stored) {
            result.case_reference = record.case_reference.clone();
            if result.message.is_empty() {
                result.message = outcome.code().to_owned();
            }
        }
        upload.report.records.push(result);
    }

    let file = FileOutcome::from_records(&outcomes);
    if file == FileOutcome::Failed {
        // Nothing to store: nothing is applied, no snapshot ending either.
        return upload
            .refuse(
                state,
                UploadOutcome::Failed,
                "no record could be stored",
                true,
            )
            .await;
    }
    upload.report.outcome = match file {
        FileOutcome::Success => UploadOutcome::Success,
        _ => UploadOutcome::Partial,
    } as i32;
    let snapshot = header.mode() == UploadMode::Snapshot;
    let changes = UploadChanges {
        authority: upload.authority.clone(),
        upserts: stored.into_iter().flatten().collect(),
        snapshot_end: snapshot.then_some(today),
        present,
        updated_by: upload.report.uploaded_by.clone(),
    };
    let subjects: Vec<_> = changes.upserts.iter().map(|d| d.subject()).collect();
    let authority = upload.authority.clone();
    // The final report (with the endings) is made inside the transaction; keep a copy.
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None::<UploadReport>));
    let finish = {
        let kept = kept.clone();
        let mut shell = Upload {
            report: upload.report.clone(),
            actor: upload.actor.clone(),
            authority: authority.clone(),
            started: upload.started,
        };
        Box::new(move |applied: &crate::store::UploadApplied| {
            shell.report.ended_case_references = applied
                .ended
                .iter()
                .map(|f| f.flag.details().case_reference().as_str().to_owned())
                .collect();
            shell.report.complete_time = Some(timestamp(OffsetDateTime::now_utc()));
            let upload_id = shell.report.upload_id.clone();
            let mut events: Vec<_> = shell.audit(AuditOutcome::Success).into_iter().collect();
            // One event per child whose flag the upload wrote, so that a child's audit
            // trail names the upload.
            for subject in &subjects {
                let event = shell.actor.event(
                    UPLOAD,
                    AuditOutcome::Success,
                    Some(subject),
                    format!("upload:{upload_id}"),
                    "flag stored by upload",
                );
                events.extend(NewOutboxEvent::audit(event));
            }
            events.extend(
                notifications
                    .into_iter()
                    .filter_map(|n| NewOutboxEvent::notification(n).ok()),
            );
            if let Ok(mut slot) = kept.lock() {
                *slot = Some(shell.report.clone());
            }
            UploadRecord {
                upload_id,
                authority: shell.authority.clone(),
                sequence_number: Some(shell.report.sequence_number),
                report: shell.report.encode_to_vec(),
                create_time_us: micros(shell.started),
                events,
            }
        })
    };
    let applied = match state.store.apply_upload(changes, finish).await {
        Ok(applied) => applied,
        Err(StoreError::Conflict(_)) => return replayed(state, &authority, &upload.report).await,
        Err(e) => return Err(e.into()),
    };
    for subject in applied.touched {
        state
            .cache
            .invalidate(&state.nhs_hasher.pseudonym(&subject))
            .await;
    }
    let report = kept
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or(upload.report);
    Ok(BulkUploadResponse {
        report: Some(report),
    })
}
