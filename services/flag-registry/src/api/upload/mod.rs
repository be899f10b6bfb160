//! BulkUpload and GetUploadReport.
//!
//! All or nothing: the records are validated, traced and written a chunk at a time as they
//! arrive, inside one transaction that commits only when the stream has ended well, with
//! the report and its events. A broken stream, a second header, a record count that does
//! not match, or an unreachable person register roll it back: nothing applied (and the
//! sequence number not used up).

use cpis_domain::{AuthorityContacts, LocalAuthority, OdsCode};
use cpis_mesh::ApiError;
use cpis_mesh::outbox::NewOutboxEvent;
use cpis_mesh::token::Activity;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::common;
use cpis_proto::flags::{
    BulkUploadRequest, BulkUploadResponse, GetUploadReportRequest, GetUploadReportResponse,
    UploadHeader, UploadMode, UploadOutcome, UploadReport, bulk_upload_request,
    get_upload_report_request,
};
use prost::Message;
use time::OffsetDateTime;
use tonic::{Request, Streaming};

use super::{FlagRegistryState, authority_user, caller};
use crate::audit::{AuditActor, UPLOAD, UPLOAD_REPORT, timestamp};
use crate::store::{StoreError, UploadKey, UploadRecord, micros};

mod apply;

/// An upload being answered.
struct Upload {
    report: UploadReport,
    actor: AuditActor,
    authority: OdsCode,
    started: OffsetDateTime,
}

impl Upload {
    fn audit(&self, outcome: AuditOutcome) -> Option<NewOutboxEvent> {
        let event = self.actor.event(
            UPLOAD,
            outcome,
            None,
            format!("upload:{}", self.report.upload_id),
            format!(
                "{}: {} stored, {} refused, {} invalid, {} ended",
                self.report.outcome().as_str_name(),
                self.report.stored_count,
                self.report.refused_count,
                self.report.invalid_count,
                self.report.ended_case_references.len()
            ),
        );
        NewOutboxEvent::audit(event).ok()
    }

    /// Keeps and answers a report that applied nothing (`sequence`: whether it used up the
    /// sequence number).
    async fn refuse(
        mut self,
        state: &FlagRegistryState,
        outcome: UploadOutcome,
        message: &str,
        uses_sequence: bool,
    ) -> Result<BulkUploadResponse, ApiError> {
        self.report.outcome = outcome as i32;
        self.report.message = message.to_owned();
        self.report.complete_time = Some(timestamp(OffsetDateTime::now_utc()));
        if !matches!(outcome, UploadOutcome::Failed) {
            // Nothing was applied: no record has an outcome.
            self.report.records = Vec::new();
            self.report.stored_count = 0;
            self.report.superseded_count = 0;
            self.report.refused_count = 0;
            self.report.invalid_count = 0;
        }
        let record = UploadRecord {
            upload_id: self.report.upload_id.clone(),
            authority: self.authority.clone(),
            sequence_number: uses_sequence.then_some(self.report.sequence_number),
            report: self.report.encode_to_vec(),
            create_time_us: micros(self.started),
            events: self.audit(AuditOutcome::Failed).into_iter().collect(),
        };
        match state.store.save_upload(record).await {
            Ok(()) => Ok(BulkUploadResponse {
                report: Some(self.report),
            }),
            Err(StoreError::SequenceUsed) => {
                replayed(state, &self.authority, self.report.sequence_number).await
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The earlier report of a replayed sequence number.
async fn replayed(
    state: &FlagRegistryState,
    authority: &OdsCode,
    sequence_number: i64,
) -> Result<BulkUploadResponse, ApiError> {
    let bytes = state
        .store
        .upload_report(authority, &UploadKey::Sequence(sequence_number))
        .await?
        .ok_or_else(|| ApiError::Aborted("a concurrent upload used the sequence number".into()))?;
    let mut earlier = UploadReport::decode(bytes.as_slice())
        .map_err(|e| ApiError::DataLoss(format!("a stored upload report: {e}")))?;
    earlier.replayed = true;
    Ok(BulkUploadResponse {
        report: Some(earlier),
    })
}

/// What is wrong with a header, if anything.
fn header_problem(header: &UploadHeader) -> Option<String> {
    let authority = header.authority.clone().unwrap_or_default();
    let code = OdsCode::parse(&authority.code.unwrap_or_default().value).ok()?;
    if let Err(e) = LocalAuthority::new(code, &authority.name) {
        return Some(format!("invalid header: authority.name {e}"));
    }
    let contacts = header.contacts.clone().unwrap_or_default();
    let blank = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
    if let Err(e) = AuthorityContacts::parse(
        blank(&contacts.office_hours_phone).as_deref(),
        &contacts.emergency_duty_phone,
        blank(&contacts.secure_email).as_deref(),
    ) {
        return Some(format!("invalid header: contacts: {e}"));
    }
    if header.sequence_number <= 0 {
        return Some("invalid header: sequence_number must be positive".to_owned());
    }
    if header.record_count < 0 {
        return Some("invalid header: record_count must not be negative".to_owned());
    }
    if header.mode() == UploadMode::Unspecified {
        return Some("invalid header: mode is required".to_owned());
    }
    None
}

pub(crate) async fn bulk_upload(
    state: &FlagRegistryState,
    request: Request<Streaming<BulkUploadRequest>>,
) -> Result<BulkUploadResponse, ApiError> {
    let actor = AuditActor::from_caller(&caller(&request)?);
    let user = state.tokens.verify_metadata(request.metadata()).await?;
    user.require(Activity::FlagManage)?;
    let actor = actor.with_user(&user);
    let mut stream = request.into_inner();
    let started = OffsetDateTime::now_utc();
    let mut upload = Upload {
        report: UploadReport {
            upload_id: uuid::Uuid::now_v7().to_string(),
            authority: Some(common::LocalAuthority {
                code: Some(common::OdsCode {
                    value: user.organisation.as_str().to_owned(),
                }),
                name: String::new(),
            }),
            create_time: Some(timestamp(started)),
            uploaded_by: user.user_id.clone(),
            ..UploadReport::default()
        },
        actor,
        authority: user.organisation.clone(),
        started,
    };

    let header = match stream.message().await {
        Ok(Some(BulkUploadRequest {
            content: Some(bulk_upload_request::Content::Header(header)),
        })) => header,
        Ok(_) => {
            let why = "the first message must be the header";
            return upload
                .refuse(state, UploadOutcome::Corrupt, why, false)
                .await;
        }
        Err(status) => {
            let why = format!("the stream broke: {}", status.message());
            return upload
                .refuse(state, UploadOutcome::Corrupt, &why, false)
                .await;
        }
    };
    let code = header
        .authority
        .as_ref()
        .and_then(|a| a.code.as_ref())
        .map(|c| c.value.clone())
        .unwrap_or_default();
    let Ok(code) = OdsCode::parse(&code) else {
        let why = "invalid header: authority.code";
        return upload
            .refuse(state, UploadOutcome::Corrupt, why, false)
            .await;
    };
    if let Err(denied) = user.require_organisation(&code) {
        let event = upload.actor.event(
            UPLOAD,
            AuditOutcome::Denied,
            None,
            format!("authority:{}", code.as_str()),
            denied.to_string(),
        );
        state.store.record(vec![event]).await?;
        return Err(denied);
    }
    upload.report.authority = header.authority.clone();
    upload.report.sequence_number = header.sequence_number;
    upload.report.mode = header.mode;
    upload.report.file_name = header.file_name.clone();
    upload.report.declared_record_count = header.record_count;
    if let Some(problem) = header_problem(&header) {
        return upload
            .refuse(state, UploadOutcome::Corrupt, &problem, false)
            .await;
    }
    // A replay is answered with the earlier report, without reading the records.
    if state
        .store
        .upload_report(&code, &UploadKey::Sequence(header.sequence_number))
        .await?
        .is_some()
    {
        return replayed(state, &code, header.sequence_number).await;
    }

    upload.authority = code;
    apply::stream(state, upload, &header, &mut stream).await
}

pub(crate) async fn get_upload_report(
    state: &FlagRegistryState,
    request: Request<GetUploadReportRequest>,
) -> Result<GetUploadReportResponse, ApiError> {
    let authority_code = request.get_ref().authority.clone();
    let (_, authority, actor) =
        authority_user(state, &request, authority_code.as_ref(), UPLOAD_REPORT).await?;
    let key = match request.into_inner().upload {
        Some(get_upload_report_request::Upload::UploadId(id)) if !id.trim().is_empty() => {
            UploadKey::Id(id)
        }
        Some(get_upload_report_request::Upload::SequenceNumber(n)) if n > 0 => {
            UploadKey::Sequence(n)
        }
        _ => {
            return Err(ApiError::invalid(
                "upload_id",
                "an upload id or a positive sequence number is required",
            ));
        }
    };
    let bytes = state
        .store
        .upload_report(&authority, &key)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such upload of this authority".to_owned()))?;
    let report = UploadReport::decode(bytes.as_slice())
        .map_err(|e| ApiError::DataLoss(format!("a stored upload report: {e}")))?;
    let event = actor.event(
        UPLOAD_REPORT,
        AuditOutcome::Success,
        None,
        format!("upload:{}", report.upload_id),
        "",
    );
    state.store.record(vec![event]).await?;
    Ok(GetUploadReportResponse {
        report: Some(report),
    })
}
