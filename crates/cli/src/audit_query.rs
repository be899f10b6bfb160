//! `cpis audit query`: search the audit log as a user with audit.read.

use clap::Args;
use cpis_proto::audit::actor::Kind;
use cpis_proto::audit::audit_service_client::AuditServiceClient;
use cpis_proto::audit::{AuditOutcome, LogEntry, QueryEventsRequest};
use cpis_proto::common::{NhsNumber, OdsCode};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::{Output, Table};
use crate::remote::{Remote, Service};
use crate::show;

/// `cpis audit query`
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Only events about this child (NHS number).
    #[arg(long)]
    nhs_number: Option<String>,
    /// Only events by this actor (a user id or a workload name).
    #[arg(long)]
    actor: Option<String>,
    /// Only events of this organisation (ODS code).
    #[arg(long)]
    organisation: Option<String>,
    /// Only this action (e.g. `attendance.check`).
    #[arg(long)]
    action: Option<String>,
    /// Only events of this trace (32 hex digits).
    #[arg(long)]
    trace_id: Option<String>,
    /// Events from this time on (RFC 3339, e.g. 2026-11-25T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    since: Option<prost_types::Timestamp>,
    /// Events before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<prost_types::Timestamp>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    limit: i32,
    #[command(flatten)]
    remote: Remote,
}

fn parse_time(text: &str) -> Result<prost_types::Timestamp, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}`: {e}; write e.g. 2026-11-25T08:00:00Z"))?;
    Ok(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    })
}

/// Runs `cpis audit query`.
pub(crate) fn run(args: QueryArgs, output: Output) -> Result<(), Failure> {
    let nhs_number = match &args.nhs_number {
        Some(text) => Some(
            text.parse::<cpis_domain::NhsNumber>()
                .map_err(|e| Failure::usage(format!("--nhs-number `{text}`: {e}")))?,
        ),
        None => None,
    };
    crate::remote::runtime()?.block_on(async {
        let mut client = AuditServiceClient::new(args.remote.channel(Service::Audit)?);
        let request = args.remote.authorized(QueryEventsRequest {
            nhs_number: nhs_number.map(|n| NhsNumber {
                value: n.as_str().to_owned(),
            }),
            actor: args.actor.clone().unwrap_or_default(),
            organisation: args.organisation.as_ref().map(|o| OdsCode {
                value: o.trim().to_ascii_uppercase(),
            }),
            action: args.action.clone().unwrap_or_default(),
            start_time: args.since,
            end_time: args.until,
            trace_id: args.trace_id.clone().unwrap_or_default(),
            start_index: 0,
            include_leaf_data: false,
            page_size: args.limit,
            page_token: String::new(),
        })?;
        let answer = client
            .query_events(request)
            .await
            .map_err(|s| Failure::from_status("the audit query", &s))?
            .into_inner();
        if output.json {
            output.json(&json!({
                "entries": answer.entries.iter().map(entry_json).collect::<Vec<_>>(),
                "next_page_token": answer.next_page_token,
            }));
            return Ok(());
        }
        if answer.entries.is_empty() {
            output.line("No events match.");
            return Ok(());
        }
        let mut table = Table::new(&[
            "index", "when", "action", "outcome", "actor", "org", "child", "where",
        ]);
        for entry in &answer.entries {
            let event = entry.event.clone().unwrap_or_default();
            table.row(vec![
                entry.index.to_string(),
                show::time(event.event_time.as_ref()),
                event.action.clone(),
                outcome(event.outcome).to_owned(),
                actor(&event),
                show::ods(event.organisation.as_ref()),
                event
                    .nhs_number
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_default(),
                show::setting(event.care_setting.as_ref()),
            ]);
        }
        table.print();
        if !answer.next_page_token.is_empty() {
            output.line(&format!("(more: raise --limit above {})", args.limit));
        }
        Ok(())
    })
}

fn outcome(value: i32) -> &'static str {
    match AuditOutcome::try_from(value) {
        Ok(AuditOutcome::Success) => "success",
        Ok(AuditOutcome::Denied) => "denied",
        Ok(AuditOutcome::Invalid) => "invalid",
        Ok(AuditOutcome::Failed) => "failed",
        _ => "unknown",
    }
}

fn actor(event: &cpis_proto::audit::AuditEvent) -> String {
    match event.actor.as_ref().and_then(|a| a.kind.as_ref()) {
        Some(Kind::User(p)) if p.display_name.is_empty() => {
            format!("user {} ({})", p.user_id, p.role)
        }
        Some(Kind::User(p)) => format!("{} ({})", p.display_name, p.role),
        Some(Kind::Workload(w)) => format!("service {w}"),
        None => String::new(),
    }
}

fn entry_json(entry: &LogEntry) -> Value {
    let event = entry.event.clone().unwrap_or_default();
    json!({
        "index": entry.index,
        "event_id": event.event_id,
        "event_time": show::rfc3339(event.event_time.as_ref()),
        "action": event.action,
        "outcome": outcome(event.outcome),
        "actor": actor(&event),
        "calling_system": event.actor.as_ref().map(|a| a.calling_system.clone()),
        "organisation": show::ods(event.organisation.as_ref()),
        "nhs_number": event.nhs_number.as_ref().map(|n| n.value.clone()),
        "care_setting": show::setting_json(event.care_setting.as_ref()),
        "reason": event.reason,
        "target": event.target,
        "traceparent": event.trace_context.as_ref().map(|t| t.traceparent.clone()),
    })
}
