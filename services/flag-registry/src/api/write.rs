//! UpsertFlag and EndFlag.

use cpis_domain::{FieldViolation, NhsNumber, RecordOutcome};
use cpis_mesh::ApiError;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::flags::{
    EndFlagRequest, EndFlagResponse, UpsertFlagRequest, UpsertFlagResponse, end_flag_request,
};
use cpis_proto::identity::PersonTraceQuery;
use tonic::Request;

use super::{FlagRegistryState, authority_user};
use crate::audit::{END, UPSERT};
use crate::convert::{self, wire_flag};
use crate::demographics::{self, wire_outcome};
use crate::error::field_path;
use crate::store::{FlagTarget, StoredFlag};

fn expected_version(value: Option<i64>, violations: &mut Vec<FieldViolation>) -> Option<u64> {
    value.and_then(|v| match u64::try_from(v) {
        Ok(v) => Some(v),
        Err(_) => {
            violations.push(FieldViolation::new(
                "expected_version",
                "must not be negative",
            ));
            None
        }
    })
}

pub(crate) async fn upsert_flag(
    state: &FlagRegistryState,
    request: Request<UpsertFlagRequest>,
) -> Result<UpsertFlagResponse, ApiError> {
    let authority_code = request
        .get_ref()
        .authority
        .as_ref()
        .and_then(|a| a.code.clone());
    let (user, _, actor) = authority_user(state, &request, authority_code.as_ref(), UPSERT).await?;
    let request = request.into_inner();
    let Some(record) = request.record.as_ref() else {
        return Err(ApiError::invalid("record", "is required"));
    };
    let mut wire_violations = Vec::new();
    let draft = convert::draft(
        request.authority.as_ref(),
        request.contacts.as_ref(),
        record,
        &mut wire_violations,
    );
    let mut violations: Vec<FieldViolation> = wire_violations
        .into_iter()
        .map(|v| FieldViolation::new(field_path(&v.field), v.description))
        .collect();
    let today = state.clock.today();
    if draft.start_date.is_some_and(|start| start > today) {
        violations.push(FieldViolation::new(
            "record.start_date",
            "must not be later than today",
        ));
    }
    let expected = expected_version(request.expected_version, &mut violations);
    let details = match draft.validate() {
        Ok(details) => Some(details),
        Err(invalid) => {
            violations.extend(
                invalid
                    .into_iter()
                    .map(|v| FieldViolation::new(field_path(&v.field), v.description)),
            );
            None
        }
    };
    let date_of_birth = convert::optional_date(
        "record.date_of_birth",
        record.date_of_birth.as_ref(),
        &mut violations,
    )
    .map(convert::wire_date);
    let (Some(details), true) = (details, violations.is_empty()) else {
        return Err(ApiError::InvalidArgument(violations));
    };

    let query = PersonTraceQuery {
        nhs_number: Some(cpis_proto::common::NhsNumber {
            value: details.subject().as_str().to_owned(),
        }),
        date_of_birth,
    };
    let traces = state
        .demographics
        .trace(vec![query])
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let outcome = traces
        .first()
        .map(demographics::outcome)
        .unwrap_or(RecordOutcome::NoMatch);
    let details = match &outcome {
        RecordOutcome::Stored => details,
        RecordOutcome::Superseded { stored_under } => details.with_subject(*stored_under),
        refused => {
            let subject = details.subject();
            let event = actor.event(
                UPSERT,
                AuditOutcome::Failed,
                Some(&subject),
                format!("case:{}", details.case_reference().as_str()),
                format!("refused by the trace: {}", refused.code()),
            );
            state.store.record(vec![event]).await?;
            return Ok(UpsertFlagResponse {
                outcome: wire_outcome(refused) as i32,
                flag: None,
                created: false,
            });
        }
    };

    let code = outcome.code();
    let audit = Box::new(move |flag: &StoredFlag| {
        vec![actor.event(
            UPSERT,
            AuditOutcome::Success,
            Some(&flag.flag.subject()),
            format!("flag:{}", flag.flag_id),
            code,
        )]
    });
    let upserted = state
        .store
        .upsert(details, expected, &user.user_id, audit)
        .await?;
    invalidate(state, upserted.flag.flag.subject()).await;
    if let Some(previous) = upserted.previous_subject {
        invalidate(state, previous).await;
    }
    let flag_state = upserted.flag.flag.state(&state.windows, today);
    Ok(UpsertFlagResponse {
        outcome: wire_outcome(&outcome) as i32,
        flag: Some(wire_flag(&upserted.flag, Some(flag_state))),
        created: upserted.created,
    })
}

pub(crate) async fn end_flag(
    state: &FlagRegistryState,
    request: Request<EndFlagRequest>,
) -> Result<EndFlagResponse, ApiError> {
    let authority_code = request.get_ref().authority.clone();
    let (user, authority, actor) =
        authority_user(state, &request, authority_code.as_ref(), END).await?;
    let request = request.into_inner();
    let mut violations = Vec::new();
    let target = match request.target {
        Some(end_flag_request::Target::FlagId(id)) if !id.trim().is_empty() => {
            Some(FlagTarget::Id(id))
        }
        Some(end_flag_request::Target::CaseReference(reference))
            if !reference.trim().is_empty() =>
        {
            Some(FlagTarget::CaseReference(reference))
        }
        _ => {
            violations.push(FieldViolation::new(
                "flag_id",
                "a flag id or a case reference is required",
            ));
            None
        }
    };
    let end_date = match request.end_date.as_ref() {
        Some(date) => convert::date("end_date", date)
            .map_err(|v| violations.push(v))
            .ok(),
        None => {
            violations.push(FieldViolation::new("end_date", "is required"));
            None
        }
    };
    let delete_date =
        convert::optional_date("delete_date", request.delete_date.as_ref(), &mut violations);
    let expected = expected_version(request.expected_version, &mut violations);
    let (Some(target), Some(end_date), true) = (target, end_date, violations.is_empty()) else {
        return Err(ApiError::InvalidArgument(violations));
    };
    let audit = Box::new(move |flag: &StoredFlag| {
        vec![actor.event(
            END,
            AuditOutcome::Success,
            Some(&flag.flag.subject()),
            format!("flag:{}", flag.flag_id),
            "",
        )]
    });
    let ended = state
        .store
        .end(
            &authority,
            &target,
            end_date,
            delete_date,
            expected,
            &user.user_id,
            audit,
        )
        .await?;
    invalidate(state, ended.flag.flag.subject()).await;
    let flag_state = ended.flag.flag.state(&state.windows, state.clock.today());
    Ok(EndFlagResponse {
        flag: Some(wire_flag(&ended.flag, Some(flag_state))),
    })
}

/// Forgets the cached flags of `subject`, after a commit.
async fn invalidate(state: &FlagRegistryState, subject: NhsNumber) {
    state
        .cache
        .invalidate(&state.nhs_hasher.pseudonym(&subject))
        .await;
}
