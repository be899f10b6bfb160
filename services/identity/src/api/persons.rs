//! The person register's RPCs: traces for the flag registry, imports for administrators.

use cpis_domain::{FieldViolation, NhsNumber, PersonStatus};
use cpis_mesh::token::Activity;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::identity as pb;
use time::Date;
use tonic::{Request, Streaming};

use super::IdentityState;
use super::authorize::require;
use super::convert::{date, nhs_number, proto_nhs};
use crate::audit::{self, AuditActor};
use crate::error::IdentityError;
use crate::persons::{Person, PersonCounts, Trace, import, trace};

/// Queries of one `TracePeople` call.
const MAX_QUERIES: usize = 1000;
/// Persons of one `ImportPersons` message.
const MAX_PERSONS_PER_MESSAGE: usize = 10_000;

/// `TracePerson`.
pub(crate) async fn trace_person(
    state: &IdentityState,
    request: Request<pb::TracePersonRequest>,
) -> Result<pb::TracePersonResponse, IdentityError> {
    let actor = AuditActor::from_caller(&super::caller(&request)?);
    let body = request.into_inner();
    let mut violations = Vec::new();
    let number = nhs_number(body.nhs_number.as_ref())
        .map_err(|e| violations.push(FieldViolation::new("nhs_number", e)))
        .ok();
    let dob = body
        .date_of_birth
        .as_ref()
        .map(date)
        .transpose()
        .map_err(|e| violations.push(FieldViolation::new("date_of_birth", e)))
        .ok();
    let (Some(number), Some(dob)) = (number, dob) else {
        return Err(IdentityError::Invalid(violations));
    };
    let traces = traced(state, &actor, &[(number, dob)]).await?;
    Ok(pb::TracePersonResponse {
        trace: traces.into_iter().next(),
    })
}

/// `TracePeople`: a malformed number is that item's outcome, not an error.
pub(crate) async fn trace_people(
    state: &IdentityState,
    request: Request<pb::TracePeopleRequest>,
) -> Result<pb::TracePeopleResponse, IdentityError> {
    let actor = AuditActor::from_caller(&super::caller(&request)?);
    let queries = request.into_inner().queries;
    if queries.is_empty() || queries.len() > MAX_QUERIES {
        return Err(IdentityError::invalid(
            "queries",
            format!("must hold 1 to {MAX_QUERIES} queries"),
        ));
    }
    let mut valid = Vec::new();
    let mut slots = Vec::with_capacity(queries.len());
    for (i, query) in queries.iter().enumerate() {
        let dob = match query.date_of_birth.as_ref().map(date).transpose() {
            Ok(dob) => dob,
            Err(e) => {
                return Err(IdentityError::invalid(
                    format!("queries[{i}].date_of_birth"),
                    e,
                ));
            }
        };
        match nhs_number(query.nhs_number.as_ref()) {
            Ok(number) => {
                slots.push(Some(valid.len()));
                valid.push((number, dob));
            }
            Err(_) => slots.push(None),
        }
    }
    let mut traced = traced(state, &actor, &valid).await?.into_iter();
    let traces = queries
        .iter()
        .zip(slots)
        .map(|(query, slot)| match slot {
            Some(_) => traced.next().unwrap_or_default(),
            None => pb::PersonTrace {
                nhs_number: query.nhs_number.clone(),
                outcome: pb::TraceOutcome::Invalid as i32,
                superseded_by: None,
            },
        })
        .collect();
    Ok(pb::TracePeopleResponse { traces })
}

/// Traces valid queries, audits each one, and answers them in order.
async fn traced(
    state: &IdentityState,
    actor: &AuditActor,
    queries: &[(NhsNumber, Option<Date>)],
) -> Result<Vec<pb::PersonTrace>, IdentityError> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = trace(state.store.as_ref(), queries).await?;
    let events: Vec<_> = queries
        .iter()
        .zip(&outcomes)
        .map(|((number, _), outcome)| {
            actor
                .event(audit::TRACE_PERSON, AuditOutcome::Success)
                .person(number)
                .reason(outcome.name())
                .build()
        })
        .collect();
    state.store.record_audit(&events).await?;
    if let [(number, _)] = queries {
        tracing::debug!(person = state.nhs_hasher.pseudonym(number), "traced");
    } else {
        tracing::debug!(count = queries.len(), "traced");
    }
    Ok(queries
        .iter()
        .zip(outcomes)
        .map(|((number, _), outcome)| {
            let (outcome, superseded_by) = match outcome {
                Trace::Matched => (pb::TraceOutcome::Matched, None),
                Trace::NoMatch => (pb::TraceOutcome::NoMatch, None),
                Trace::Sensitive => (pb::TraceOutcome::Sensitive, None),
                Trace::Superseded(by) => (pb::TraceOutcome::Superseded, Some(proto_nhs(&by))),
                Trace::Inactive => (pb::TraceOutcome::Inactive, None),
                Trace::NotVerified => (pb::TraceOutcome::NotVerified, None),
            };
            pb::PersonTrace {
                nhs_number: Some(proto_nhs(number)),
                outcome: outcome as i32,
                superseded_by,
            }
        })
        .collect())
}

/// `ImportPersons`: each message applied on its own, so a re-run finishes the job.
pub(crate) async fn import_persons(
    state: &IdentityState,
    request: Request<Streaming<pb::ImportPersonsRequest>>,
) -> Result<pb::ImportPersonsResponse, IdentityError> {
    let actor = require(state, &request, Activity::DirectoryAdmin).await?;
    let mut stream = request.into_inner();
    let mut total = PersonCounts::default();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|status| IdentityError::invalid("persons", status.message().to_owned()))?
    {
        let persons = validate_batch(&message.persons)?;
        let counts = import(state.store.as_ref(), &actor, &persons).await?;
        total += counts;
    }
    Ok(pb::ImportPersonsResponse {
        created_count: i64::try_from(total.created).unwrap_or(i64::MAX),
        updated_count: i64::try_from(total.updated).unwrap_or(i64::MAX),
        unchanged_count: i64::try_from(total.unchanged).unwrap_or(i64::MAX),
    })
}

/// The persons of one message, or the violations of its bad ones.
fn validate_batch(persons: &[pb::Person]) -> Result<Vec<Person>, IdentityError> {
    if persons.is_empty() || persons.len() > MAX_PERSONS_PER_MESSAGE {
        return Err(IdentityError::invalid(
            "persons",
            format!("must hold 1 to {MAX_PERSONS_PER_MESSAGE} persons"),
        ));
    }
    let mut out = Vec::with_capacity(persons.len());
    for (i, p) in persons.iter().enumerate() {
        let at = |f: &str| format!("persons[{i}].{f}");
        let number = nhs_number(p.nhs_number.as_ref())
            .map_err(|e| IdentityError::invalid(at("nhs_number"), e))?;
        let dob = match &p.date_of_birth {
            Some(d) => date(d).map_err(|e| IdentityError::invalid(at("date_of_birth"), e))?,
            None => return Err(IdentityError::invalid(at("date_of_birth"), "is required")),
        };
        let status = match pb::PersonStatus::try_from(p.status) {
            Ok(pb::PersonStatus::Unspecified | pb::PersonStatus::Active) => PersonStatus::Active,
            Ok(pb::PersonStatus::Inactive) => PersonStatus::Inactive,
            Ok(pb::PersonStatus::Superseded) => {
                let by = nhs_number(p.superseded_by.as_ref())
                    .map_err(|e| IdentityError::invalid(at("superseded_by"), e))?;
                if by == number {
                    return Err(IdentityError::invalid(
                        at("superseded_by"),
                        "a number cannot replace itself",
                    ));
                }
                PersonStatus::Superseded { by }
            }
            Err(_) => return Err(IdentityError::invalid(at("status"), "is not a status")),
        };
        if !matches!(status, PersonStatus::Superseded { .. }) && p.superseded_by.is_some() {
            return Err(IdentityError::invalid(
                at("superseded_by"),
                "only a superseded record names its replacement",
            ));
        }
        out.push(Person {
            nhs_number: number,
            date_of_birth: dob,
            status,
            sensitive: p.sensitive,
        });
    }
    Ok(out)
}
