//! Validating, tracing and applying the records of an upload as they stream in, a chunk at
//! a time, through one database transaction: memory is bounded by a chunk (plus the report,
//! which the answer carries whole), and the upload still applies all or nothing.

use cpis_domain::{FieldViolation, FlagDetails, NhsNumber, RecordOutcome};
use cpis_mesh::ApiError;
use cpis_mesh::outbox::NewOutboxEvent;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::common;
use cpis_proto::flags::{
    BulkUploadRequest, BulkUploadResponse, FlagRecord, UploadHeader, UploadMode, UploadOutcome,
    UploadRecordResult, UploadReport, bulk_upload_request,
};
use cpis_proto::identity::PersonTraceQuery;
use cpis_proto::notification::{
    NhsNumberChangeNotice, NotificationEvent, NotificationKind, notification_event,
};
use prost::Message;
use time::{Date, OffsetDateTime};
use tonic::Streaming;

use super::{Upload, replayed};
use crate::api::FlagRegistryState;
use crate::audit::{UPLOAD, timestamp};
use crate::convert;
use crate::demographics::{self, MAX_BATCH, wire_outcome};
use crate::store::{StoreError, UploadChunk, UploadRecord, UploadTransaction, micros};

/// Records per chunk: one `TracePeople` batch, one multi-row write.
const CHUNK: usize = MAX_BATCH;

/// Why a chunk stopped the upload.
enum Stop {
    /// The person register did not answer: nothing is applied.
    Unavailable(String),
    /// Anything else.
    Failed(ApiError),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        Self::Failed(error.into())
    }
}

/// The FlagRecord field a domain field is sent in.
fn record_field(field: &str) -> &str {
    match field {
        "legal_basis" => "looked_after_legal_basis",
        "expected_delivery" => "expected_delivery_date",
        other => other,
    }
}

/// Reads the records after a valid header, applying them a chunk at a time, and commits
/// only when the stream ends well with the announced count and at least one record stored.
pub(super) async fn stream(
    state: &FlagRegistryState,
    mut upload: Upload,
    header: &UploadHeader,
    stream: &mut Streaming<BulkUploadRequest>,
) -> Result<BulkUploadResponse, ApiError> {
    let today = state.clock.today();
    let mut tx: Option<Box<dyn UploadTransaction>> = None;
    let mut touched: Vec<NhsNumber> = Vec::new();
    let mut chunk: Vec<FlagRecord> = Vec::with_capacity(CHUNK);
    let mut received: i64 = 0;
    loop {
        let end = match stream.message().await {
            Ok(None) => true,
            Ok(Some(BulkUploadRequest {
                content: Some(bulk_upload_request::Content::Record(record)),
            })) => {
                chunk.push(record);
                received += 1;
                false
            }
            Ok(Some(_)) => {
                drop(tx);
                let why = "a second header (or an empty message) after the first";
                return upload
                    .refuse(state, UploadOutcome::Corrupt, why, false)
                    .await;
            }
            Err(status) => {
                drop(tx);
                let why = format!("the stream broke: {}", status.message());
                return upload
                    .refuse(state, UploadOutcome::Corrupt, &why, false)
                    .await;
            }
        };
        // More records than announced: corrupt, whatever follows.
        if received > header.record_count {
            break;
        }
        if chunk.len() == CHUNK || (end && !chunk.is_empty()) {
            let open = match tx.as_mut() {
                Some(open) => open,
                None => tx.insert(begin(state, &upload).await?),
            };
            let records = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            match apply_chunk(state, &mut upload, header, today, open.as_mut(), records).await {
                Ok(changed) => touched.extend(changed),
                Err(Stop::Unavailable(why)) => {
                    drop(tx);
                    let outcome = UploadOutcome::DemographicsUnavailable;
                    return upload.refuse(state, outcome, &why, false).await;
                }
                Err(Stop::Failed(error)) => return Err(error),
            }
        }
        if end {
            break;
        }
    }
    upload.report.received_record_count = received;
    if received != header.record_count {
        drop(tx);
        let why = if received > header.record_count {
            format!(
                "the header announced {} records, more were received",
                header.record_count
            )
        } else {
            format!(
                "the header announced {} records, {received} were received",
                header.record_count
            )
        };
        return upload
            .refuse(state, UploadOutcome::Corrupt, &why, false)
            .await;
    }
    if received > 0 && upload.report.stored_count == 0 {
        // Nothing to store: nothing is applied, no snapshot ending either.
        drop(tx);
        let why = "no record could be stored";
        return upload.refuse(state, UploadOutcome::Failed, why, true).await;
    }
    let tx = match tx {
        Some(tx) => tx,
        // An empty upload: a snapshot of nothing ends every open flag.
        None => begin(state, &upload).await?,
    };
    upload.report.outcome = if upload.report.stored_count == received {
        UploadOutcome::Success
    } else {
        UploadOutcome::Partial
    } as i32;
    commit(state, upload, header, today, tx, touched).await
}

async fn begin(
    state: &FlagRegistryState,
    upload: &Upload,
) -> Result<Box<dyn UploadTransaction>, ApiError> {
    Ok(state
        .store
        .begin_upload(&upload.authority, &upload.report.uploaded_by)
        .await?)
}

/// Keeps the report with the snapshot's endings, commits, and clears the cache of every
/// number whose flags changed.
async fn commit(
    state: &FlagRegistryState,
    upload: Upload,
    header: &UploadHeader,
    today: Date,
    tx: Box<dyn UploadTransaction>,
    mut touched: Vec<NhsNumber>,
) -> Result<BulkUploadResponse, ApiError> {
    let authority = upload.authority.clone();
    let sequence = upload.report.sequence_number;
    // The report moves into the transaction's last step and comes back out: never copied.
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None::<UploadReport>));
    let finish = {
        let kept = kept.clone();
        let mut upload = upload;
        Box::new(move |applied: &crate::store::UploadApplied| {
            upload.report.ended_case_references = applied
                .ended
                .iter()
                .map(|f| f.flag.details().case_reference().as_str().to_owned())
                .collect();
            upload.report.complete_time = Some(timestamp(OffsetDateTime::now_utc()));
            let events = upload.audit(AuditOutcome::Success).into_iter().collect();
            let record = UploadRecord {
                upload_id: upload.report.upload_id.clone(),
                authority: upload.authority.clone(),
                sequence_number: Some(upload.report.sequence_number),
                report: upload.report.encode_to_vec(),
                create_time_us: micros(upload.started),
                events,
            };
            if let Ok(mut slot) = kept.lock() {
                *slot = Some(upload.report);
            }
            record
        })
    };
    let snapshot = (header.mode() == UploadMode::Snapshot).then_some(today);
    let applied = match tx.commit(snapshot, finish).await {
        Ok(applied) => applied,
        Err(StoreError::SequenceUsed) => {
            return replayed(state, &authority, sequence).await;
        }
        Err(e) => return Err(e.into()),
    };
    touched.extend(applied.touched);
    touched.sort_unstable();
    touched.dedup();
    for subject in touched {
        state
            .cache
            .invalidate(&state.nhs_hasher.pseudonym(&subject))
            .await;
    }
    let report = kept
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .ok_or_else(|| ApiError::Internal("the upload's report was not kept".to_owned()))?;
    Ok(BulkUploadResponse {
        report: Some(report),
    })
}

/// A notification to the authority that a record's number changed.
fn notice(
    upload: &Upload,
    header: &UploadHeader,
    record: &FlagRecord,
    kind: NotificationKind,
    superseded_by: Option<common::NhsNumber>,
) -> Option<NewOutboxEvent> {
    let event = NotificationEvent {
        event_id: String::new(),
        authority: Some(common::OdsCode {
            value: upload.authority.as_str().to_owned(),
        }),
        kind: kind as i32,
        occur_time: Some(timestamp(OffsetDateTime::now_utc())),
        trace_context: None,
        payload: Some(notification_event::Payload::NhsNumberChange(
            NhsNumberChangeNotice {
                nhs_number: record.nhs_number.clone(),
                superseded_by,
                case_reference: record.case_reference.clone(),
                upload_id: upload.report.upload_id.clone(),
                sequence_number: header.sequence_number,
            },
        )),
    };
    NewOutboxEvent::notification(event).ok()
}

/// Validates, traces and writes one chunk; adds its records' outcomes to the report.
/// Answers the NHS numbers whose flags changed.
async fn apply_chunk(
    state: &FlagRegistryState,
    upload: &mut Upload,
    header: &UploadHeader,
    today: Date,
    tx: &mut dyn UploadTransaction,
    records: Vec<FlagRecord>,
) -> Result<Vec<NhsNumber>, Stop> {
    // Every record's case reference counts as present (refused ones too); the first
    // occurrence in the upload wins, a repeat is invalid.
    let references: Vec<&str> = records.iter().map(|r| r.case_reference.trim()).collect();
    let first = tx.claim(&references).await?;

    let mut outcomes: Vec<Option<RecordOutcome>> = Vec::with_capacity(records.len());
    let mut valid: Vec<Option<(FlagDetails, Option<common::Date>)>> =
        Vec::with_capacity(records.len());
    for (record, first) in records.iter().zip(first) {
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
            violations.push(FieldViolation::new(
                "start_date",
                "must not be later than today",
            ));
        }
        let details = draft.validate().map_err(|invalid| {
            violations.extend(invalid);
        });
        if !first {
            violations.push(FieldViolation::new(
                "case_reference",
                "is repeated in the upload",
            ));
        }
        match (details, violations.into_iter().next()) {
            (Ok(details), None) => {
                outcomes.push(None);
                valid.push(Some((details, date_of_birth.map(convert::wire_date))));
            }
            (_, first) => {
                let first = first.unwrap_or_else(|| FieldViolation::new("record", "is invalid"));
                outcomes.push(Some(RecordOutcome::Invalid {
                    field: record_field(&first.field).to_owned(),
                    reason: first.description,
                }));
                valid.push(None);
            }
        }
    }

    // One trace of the chunk's valid records.
    let queries: Vec<PersonTraceQuery> = valid
        .iter()
        .flatten()
        .map(|(details, dob)| PersonTraceQuery {
            nhs_number: Some(common::NhsNumber {
                value: details.subject().as_str().to_owned(),
            }),
            date_of_birth: *dob,
        })
        .collect();
    let mut upserts = Vec::with_capacity(queries.len());
    if !queries.is_empty() {
        let traces = state
            .demographics
            .trace(queries)
            .await
            .map_err(|e| Stop::Unavailable(e.to_string()))?;
        let mut traces = traces.into_iter();
        for (outcome, valid) in outcomes.iter_mut().zip(valid) {
            let Some((details, _)) = valid else { continue };
            let traced = traces
                .next()
                .map_or(RecordOutcome::NoMatch, |t| demographics::outcome(&t));
            match &traced {
                RecordOutcome::Stored => upserts.push(details),
                RecordOutcome::Superseded { stored_under } => {
                    upserts.push(details.with_subject(*stored_under));
                }
                _ => {}
            }
            *outcome = Some(traced);
        }
    }

    // The report's records and counts, an audit event per child stored, and the
    // authority's notifications.
    let upload_id = upload.report.upload_id.clone();
    let mut events = Vec::with_capacity(upserts.len());
    for details in &upserts {
        let event = upload.actor.event(
            UPLOAD,
            AuditOutcome::Success,
            Some(&details.subject()),
            format!("upload:{upload_id}"),
            "flag stored by upload",
        );
        events.extend(NewOutboxEvent::audit(event));
    }
    let before = upload.report.records.len();
    for (i, (record, outcome)) in records.iter().zip(outcomes).enumerate() {
        let outcome = outcome.unwrap_or(RecordOutcome::NoMatch);
        let mut result = UploadRecordResult {
            record_index: i64::try_from(before + i + 1).unwrap_or(i64::MAX),
            outcome: wire_outcome(&outcome) as i32,
            ..UploadRecordResult::default()
        };
        match &outcome {
            RecordOutcome::Stored => upload.report.stored_count += 1,
            RecordOutcome::Superseded { stored_under } => {
                upload.report.stored_count += 1;
                upload.report.superseded_count += 1;
                let new = common::NhsNumber {
                    value: stored_under.as_str().to_owned(),
                };
                result.superseded_by = Some(new.clone());
                events.extend(notice(
                    upload,
                    header,
                    record,
                    NotificationKind::NhsNumberSuperseded,
                    Some(new),
                ));
            }
            RecordOutcome::Invalid { field, reason } => {
                upload.report.invalid_count += 1;
                result.invalid_field = field.clone();
                result.message = format!("{field} {reason}");
            }
            refused => {
                upload.report.refused_count += 1;
                if matches!(refused, RecordOutcome::Inactive) {
                    events.extend(notice(
                        upload,
                        header,
                        record,
                        NotificationKind::NhsNumberInactive,
                        None,
                    ));
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
    Ok(tx.write(UploadChunk { upserts, events }).await?)
}
