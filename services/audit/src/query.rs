//! `QueryEvents`: who looked at this child, when, from where — for privacy officers, and
//! itself audited.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cpis_mesh::token::Principal;
use cpis_mesh::{ApiError, FieldViolation};
use cpis_proto::audit::{
    Actor, AuditEvent, AuditOutcome, QueryEventsRequest, QueryEventsResponse, actor,
};
use cpis_proto::common::{NhsNumber, OdsCode, TraceContext};
use tonic::Request;
use uuid::Uuid;

use crate::api::{AuditApi, QUERY_ACTIVITY};
use crate::scope::{self, Refusal, Scope};
use crate::store::{AuditStore, Columns, EventFilter, PendingEvent};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1_000)
}

fn encode_token(next_index: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{next_index}"))
}

fn decode_token(token: &str) -> Option<u64> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("v1:")?
        .parse()
        .ok()
}

/// The validated filter, the page size and whether to include leaf data.
fn parse(body: &QueryEventsRequest) -> Result<(EventFilter, u32), ApiError> {
    let mut problems = Vec::new();
    let mut filter = EventFilter::default();
    if let Some(n) = body.nhs_number.as_ref().filter(|n| !n.value.is_empty()) {
        match n.value.parse::<cpis_domain::NhsNumber>() {
            Ok(number) => filter.subject_nhs_number = Some(number.as_str().to_owned()),
            Err(e) => problems.push(FieldViolation::new("nhs_number", e.to_string())),
        }
    }
    if let Some(o) = body.organisation.as_ref().filter(|o| !o.value.is_empty()) {
        match o.value.parse::<cpis_domain::OdsCode>() {
            Ok(code) => filter.organisation = Some(code.as_str().to_owned()),
            Err(e) => problems.push(FieldViolation::new("organisation", e.to_string())),
        }
    }
    filter.actor = Some(body.actor.clone()).filter(|a| !a.is_empty());
    filter.action = Some(body.action.clone()).filter(|a| !a.is_empty());
    filter.start_time_us = body.start_time.as_ref().map(micros);
    filter.end_time_us = body.end_time.as_ref().map(micros);
    if let (Some(start), Some(end)) = (filter.start_time_us, filter.end_time_us)
        && start >= end
    {
        problems.push(FieldViolation::new("end_time", "must be after start_time"));
    }
    if !body.trace_id.is_empty() {
        if body.trace_id.len() == 32 && body.trace_id.chars().all(|c| c.is_ascii_hexdigit()) {
            filter.trace_id = Some(body.trace_id.to_ascii_lowercase());
        } else {
            problems.push(FieldViolation::new("trace_id", "must be 32 hex digits"));
        }
    }
    let mut start = u64::try_from(body.start_index).unwrap_or_else(|_| {
        problems.push(FieldViolation::new("start_index", "must not be negative"));
        0
    });
    if !body.page_token.is_empty() {
        match decode_token(&body.page_token) {
            Some(next) => start = start.max(next),
            None => problems.push(FieldViolation::new(
                "page_token",
                "is not a token this service gave",
            )),
        }
    }
    filter.start_index = start;
    let page = match u32::try_from(body.page_size) {
        Ok(0) => DEFAULT_PAGE,
        Ok(n) => n.min(MAX_PAGE),
        Err(_) => {
            problems.push(FieldViolation::new("page_size", "must not be negative"));
            DEFAULT_PAGE
        }
    };
    if problems.is_empty() {
        Ok((filter, page))
    } else {
        Err(ApiError::InvalidArgument(problems))
    }
}

/// The audit event recording a query: who asked, for which child, with which filters (named,
/// not their values, since the child is already the event's subject), and how it ended.
fn query_event(
    principal: &Principal,
    filter: &EventFilter,
    outcome: AuditOutcome,
    result: &str,
) -> AuditEvent {
    let now = time::OffsetDateTime::now_utc();
    let mut used = Vec::new();
    for (name, set) in [
        ("nhs_number", filter.subject_nhs_number.is_some()),
        ("actor", filter.actor.is_some()),
        ("organisation", filter.organisation.is_some()),
        ("action", filter.action.is_some()),
        (
            "time",
            filter.start_time_us.is_some() || filter.end_time_us.is_some(),
        ),
        ("trace_id", filter.trace_id.is_some()),
    ] {
        if set {
            used.push(name);
        }
    }
    let span = tracing::Span::current();
    AuditEvent {
        event_id: Uuid::now_v7().to_string(),
        event_time: Some(prost_types::Timestamp {
            seconds: now.unix_timestamp(),
            nanos: i32::try_from(now.nanosecond()).unwrap_or_default(),
        }),
        actor: Some(Actor {
            kind: Some(actor::Kind::User(cpis_proto::common::Principal {
                user_id: principal.user_id.clone(),
                display_name: String::new(),
                role_profile_id: principal.role_profile.clone(),
                role: principal.role.clone(),
                organisation: Some(OdsCode {
                    value: principal.organisation.as_str().to_owned(),
                }),
            })),
            calling_system: String::new(),
        }),
        action: "audit.query".to_owned(),
        nhs_number: filter
            .subject_nhs_number
            .clone()
            .map(|value| NhsNumber { value }),
        outcome: outcome as i32,
        reason: format!(
            "filters: {}; {result}",
            if used.is_empty() {
                "none".to_owned()
            } else {
                used.join(", ")
            }
        ),
        care_setting: None,
        organisation: Some(OdsCode {
            value: principal.organisation.as_str().to_owned(),
        }),
        target: String::new(),
        trace_context: cpis_mesh::propagation::trace_id(&span).map(|trace_id| TraceContext {
            traceparent: format!(
                "00-{trace_id}-{}-01",
                cpis_mesh::propagation::span_id(&span)
                    .unwrap_or_else(|| "0000000000000001".to_owned())
            ),
            tracestate: String::new(),
        }),
    }
}

impl<S: AuditStore> AuditApi<S> {
    /// Appends the event recording a query.
    async fn record_query(
        &self,
        principal: &Principal,
        filter: &EventFilter,
        outcome: AuditOutcome,
        result: &str,
    ) -> Result<(), ApiError> {
        let record = query_event(principal, filter, outcome, result);
        self.append_pending(vec![PendingEvent {
            event_id: Uuid::parse_str(&record.event_id).unwrap_or_else(|_| Uuid::now_v7()),
            columns: Columns::of(&record),
            event: record,
        }])
        .await?;
        Ok(())
    }
}

/// Answers a query for a user with `audit.read`, within the user's scope, and records it in
/// the log, refused or not.
pub(crate) async fn query_events<S: AuditStore>(
    api: &AuditApi<S>,
    request: Request<QueryEventsRequest>,
) -> Result<QueryEventsResponse, ApiError> {
    // Authenticate before looking at anything, so a refused caller learns nothing.
    let principal = api.principal(&request).await?;
    let body = request.into_inner();
    if let Err(denied) = principal.require(QUERY_ACTIVITY) {
        // The child asked about is recorded when the filters say it.
        let asked = parse(&body).map(|(filter, _)| filter).unwrap_or_default();
        api.record_query(
            &principal,
            &asked,
            AuditOutcome::Denied,
            "denied: the role profile does not grant audit.read",
        )
        .await?;
        return Err(denied);
    }
    let (mut filter, page) = parse(&body)?;
    if let Some(Ok(number)) = filter
        .subject_nhs_number
        .as_deref()
        .map(str::parse::<cpis_domain::NhsNumber>)
    {
        tracing::info!(subject = %api.nhs_hasher.pseudonym(&number), "audit query about a child");
    }
    let scope = Scope::of(&principal, &api.national);
    match scope::apply(scope, &principal, &mut filter, &api.flags).await {
        Ok(()) => {}
        Err(Refusal::Invalid(error)) => return Err(error),
        Err(Refusal::Denied(reason)) => {
            api.record_query(
                &principal,
                &filter,
                AuditOutcome::Denied,
                &format!("denied: {reason}"),
            )
            .await?;
            return Err(ApiError::PermissionDenied(reason.to_owned()));
        }
        Err(Refusal::Unavailable) => {
            api.record_query(
                &principal,
                &filter,
                AuditOutcome::Failed,
                "failed: the flag registry did not answer",
            )
            .await?;
            return Err(ApiError::Unavailable(scope::FLAGS_UNAVAILABLE.to_owned()));
        }
    }
    let mut events = api.store.events(&filter, page + 1).await?;
    let next_page_token = if events.len() > page as usize {
        events.truncate(page as usize);
        events
            .last()
            .map(|e| encode_token(u64::try_from(e.entry.index).unwrap_or_default() + 1))
            .unwrap_or_default()
    } else {
        String::new()
    };
    api.record_query(
        &principal,
        &filter,
        AuditOutcome::Success,
        &format!("{} entries returned", events.len()),
    )
    .await?;
    Ok(QueryEventsResponse {
        entries: events
            .into_iter()
            .map(|e| {
                let mut entry = e.entry;
                if body.include_leaf_data {
                    entry.leaf_data = e.leaf_data;
                }
                entry
            })
            .collect(),
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_forgeries() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        assert_eq!(decode_token("not-a-token"), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("v2:1")), None);
    }

    #[test]
    fn bad_filters_are_named() {
        let body = QueryEventsRequest {
            nhs_number: Some(NhsNumber {
                value: "123".into(),
            }),
            trace_id: "xyz".into(),
            page_size: -1,
            ..Default::default()
        };
        let Err(ApiError::InvalidArgument(problems)) = parse(&body) else {
            panic!("accepted bad filters");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["nhs_number", "trace_id", "page_size"]);
    }
}
