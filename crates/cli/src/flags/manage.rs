//! `cpis flags list|upsert|end`: one call each (list: one per page).

use clap::{Args, ValueEnum};
use cpis_proto::common;
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{
    EndFlagRequest, FlagRecord, ListFlagsRequest, RecordOutcome, UpsertFlagRequest,
    end_flag_request,
};
use serde_json::{Value, json};

use super::records::{date, date_text, kind, kind_code, legal_basis};
use super::{AuthorityArgs, AuthorityCode};
use crate::failure::Failure;
use crate::output::{Output, Table};
use crate::remote::{Remote, Service};

/// A flag state, as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum State {
    /// From the start date until the end date.
    Current,
    /// Ended, still shown in checks.
    RecentlyEnded,
    /// Ended longer ago than the window.
    History,
}

/// `cpis flags list`
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only flags of this kind (CPP, LAC, UCPP); repeat for several.
    #[arg(long, value_parser = parse_kind)]
    kind: Vec<common::FlagKind>,
    /// Only flags in this state; repeat for several.
    #[arg(long, value_enum)]
    state: Vec<State>,
    /// Only the flags of this NHS number.
    #[arg(long)]
    nhs_number: Option<String>,
    /// Only the flag with this case reference.
    #[arg(long)]
    case_ref: Option<String>,
    /// Every page, not only the first.
    #[arg(long)]
    all: bool,
    /// Flags per page (the registry's default 50, at most 1000).
    #[arg(long, default_value_t = 0)]
    page_size: i32,
    /// Start at this page (the token a previous page printed).
    #[arg(long, default_value = "")]
    page_token: String,
    #[command(flatten)]
    authority: AuthorityCode,
    #[command(flatten)]
    remote: Remote,
}

/// `cpis flags upsert`
#[derive(Debug, Args)]
pub(crate) struct UpsertArgs {
    /// The authority's case reference (the key: the same reference replaces the flag).
    #[arg(long)]
    case_ref: String,
    /// The subject's NHS number (the pregnant woman's for UCPP).
    #[arg(long)]
    nhs_number: String,
    /// CPP, LAC or UCPP.
    #[arg(long, value_parser = parse_kind)]
    kind: common::FlagKind,
    /// The start date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    start: common::Date,
    /// The end date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    end: Option<common::Date>,
    /// The date the record is to be purged, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    delete_after: Option<common::Date>,
    /// The subject's date of birth (checked by the trace), YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    date_of_birth: Option<common::Date>,
    /// LAC only: S31, S38 or S20.
    #[arg(long, value_parser = parse_legal_basis)]
    legal_basis: Option<common::LookedAfterLegalBasis>,
    /// UCPP only: the expected date of delivery, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    expected_delivery: Option<common::Date>,
    /// Write only if the stored flag is at this version (0: only if none exists).
    #[arg(long)]
    version: Option<i64>,
    #[command(flatten)]
    authority: AuthorityArgs,
    #[command(flatten)]
    remote: Remote,
}

/// `cpis flags end`
#[derive(Debug, Args)]
pub(crate) struct EndArgs {
    /// The authority's case reference of the flag.
    #[arg(long)]
    case_ref: String,
    /// The end date (inclusive), YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    end: common::Date,
    /// The date the record is to be purged, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    delete_after: Option<common::Date>,
    /// End only if the stored flag is at this version.
    #[arg(long)]
    version: Option<i64>,
    #[command(flatten)]
    authority: AuthorityCode,
    #[command(flatten)]
    remote: Remote,
}

fn parse_kind(text: &str) -> Result<common::FlagKind, String> {
    match kind(text.trim())? {
        common::FlagKind::Unspecified => Err("CPP, LAC or UCPP".to_owned()),
        kind => Ok(kind),
    }
}

fn parse_legal_basis(text: &str) -> Result<common::LookedAfterLegalBasis, String> {
    legal_basis(text.trim())
}

fn parse_date(text: &str) -> Result<common::Date, String> {
    date(text.trim())?.ok_or_else(|| "write a date as YYYY-MM-DD".to_owned())
}

fn state_name(state: i32) -> &'static str {
    match common::FlagState::try_from(state) {
        Ok(common::FlagState::Current) => "current",
        Ok(common::FlagState::RecentlyEnded) => "recently ended",
        Ok(common::FlagState::History) => "history",
        _ => "not yet started",
    }
}

/// A flag for scripts.
fn flag_json(flag: &common::Flag) -> Value {
    json!({
        "flag_id": flag.flag_id,
        "case_reference": flag.case_reference,
        "nhs_number": flag.nhs_number.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
        "kind": kind_code(flag.kind),
        "state": state_name(flag.state),
        "start_date": date_text(flag.start_date.as_ref()),
        "end_date": flag.end_date.as_ref().map(|d| date_text(Some(d))),
        "delete_date": flag.delete_date.as_ref().map(|d| date_text(Some(d))),
        "version": flag.version,
        "updated_by": flag.updated_by,
    })
}

/// A flag in one line for people.
fn flag_line(flag: &common::Flag) -> String {
    let end = match flag.end_date.as_ref() {
        Some(end) => format!(" to {}", date_text(Some(end))),
        None => String::new(),
    };
    format!(
        "{} {} on {} from {}{end} ({}, version {})",
        kind_code(flag.kind),
        flag.case_reference,
        flag.nhs_number
            .as_ref()
            .map(|n| n.value.as_str())
            .unwrap_or_default(),
        date_text(flag.start_date.as_ref()),
        state_name(flag.state),
        flag.version
    )
}

/// Runs `cpis flags list`.
pub(crate) fn list(args: ListArgs, output: Output) -> Result<(), Failure> {
    let authority = args.authority.resolve(&args.remote)?;
    let runtime = crate::remote::runtime()?;
    let (flags, next) = runtime.block_on(async {
        let mut client =
            FlagRegistryServiceClient::new(args.remote.channel(Service::FlagRegistry)?);
        let mut flags = Vec::new();
        let mut token = args.page_token.clone();
        loop {
            let request = ListFlagsRequest {
                authority: Some(authority.clone()),
                kinds: args.kind.iter().map(|k| *k as i32).collect(),
                states: args
                    .state
                    .iter()
                    .map(|s| match s {
                        State::Current => common::FlagState::Current,
                        State::RecentlyEnded => common::FlagState::RecentlyEnded,
                        State::History => common::FlagState::History,
                    } as i32)
                    .collect(),
                nhs_number: args.nhs_number.as_ref().map(|n| common::NhsNumber {
                    value: n.trim().to_owned(),
                }),
                case_reference: args.case_ref.clone().unwrap_or_default(),
                page_size: args.page_size,
                page_token: token,
            };
            let page = client
                .list_flags(args.remote.authorized(request)?)
                .await
                .map_err(|status| Failure::from_status("listing the flags", &status))?
                .into_inner();
            flags.extend(page.flags);
            token = page.next_page_token;
            if token.is_empty() || !args.all {
                return Ok::<_, Failure>((flags, token));
            }
        }
    })?;
    if output.json {
        output.json(&json!({
            "authority": authority.value,
            "flags": flags.iter().map(flag_json).collect::<Vec<_>>(),
            "next_page_token": next,
        }));
        return Ok(());
    }
    let mut table = Table::new(&[
        "case ref",
        "NHS number",
        "kind",
        "state",
        "start",
        "end",
        "version",
    ]);
    for flag in &flags {
        table.row(vec![
            flag.case_reference.clone(),
            flag.nhs_number
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_default(),
            kind_code(flag.kind).to_owned(),
            state_name(flag.state).to_owned(),
            date_text(flag.start_date.as_ref()),
            date_text(flag.end_date.as_ref()),
            flag.version.to_string(),
        ]);
    }
    if flags.is_empty() {
        output.line(&format!("no flags of {} match", authority.value));
    } else {
        table.print();
    }
    if !next.is_empty() {
        output.line(&format!(
            "more: --page-token {next} (or --all for every page)"
        ));
    }
    Ok(())
}

/// Runs `cpis flags upsert`.
pub(crate) fn upsert(args: UpsertArgs, output: Output) -> Result<(), Failure> {
    let runtime = crate::remote::runtime()?;
    let answer = runtime.block_on(async {
        let (authority, contacts) = args.authority.resolve_with_contacts(&args.remote).await?;
        let request = UpsertFlagRequest {
            authority: Some(authority),
            contacts: Some(contacts),
            record: Some(FlagRecord {
                case_reference: args.case_ref.trim().to_owned(),
                nhs_number: Some(common::NhsNumber {
                    value: args.nhs_number.trim().to_owned(),
                }),
                date_of_birth: args.date_of_birth,
                kind: args.kind as i32,
                looked_after_legal_basis: args.legal_basis.map_or(0, |b| b as i32),
                expected_delivery_date: args.expected_delivery,
                start_date: Some(args.start),
                end_date: args.end,
                delete_date: args.delete_after,
            }),
            expected_version: args.version,
        };
        let channel = args.remote.channel(Service::FlagRegistry)?;
        FlagRegistryServiceClient::new(channel)
            .upsert_flag(args.remote.authorized(request)?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| Failure::from_status("the upsert", &status))
    })?;
    let outcome = answer.outcome();
    let name = outcome.as_str_name();
    let name = name.strip_prefix("RECORD_OUTCOME_").unwrap_or(name);
    if output.json {
        output.json(&json!({
            "outcome": name,
            "created": answer.created,
            "flag": answer.flag.as_ref().map(flag_json),
        }));
    } else if let Some(flag) = &answer.flag {
        let what = if answer.created { "created" } else { "stored" };
        output.line(&format!("{what} ({name}): {}", flag_line(flag)));
    }
    match (outcome, &answer.flag) {
        (RecordOutcome::Stored | RecordOutcome::Superseded, Some(_)) => Ok(()),
        _ => Err(Failure::failed(format!(
            "not stored: the trace of the NHS number answered {name}"
        ))),
    }
}

/// Runs `cpis flags end`.
pub(crate) fn end(args: EndArgs, output: Output) -> Result<(), Failure> {
    let authority = args.authority.resolve(&args.remote)?;
    let runtime = crate::remote::runtime()?;
    let flag = runtime.block_on(async {
        let request = EndFlagRequest {
            authority: Some(authority),
            target: Some(end_flag_request::Target::CaseReference(
                args.case_ref.trim().to_owned(),
            )),
            end_date: Some(args.end),
            delete_date: args.delete_after,
            expected_version: args.version,
        };
        let channel = args.remote.channel(Service::FlagRegistry)?;
        FlagRegistryServiceClient::new(channel)
            .end_flag(args.remote.authorized(request)?)
            .await
            .map_err(|status| Failure::from_status("ending the flag", &status))
            .map(|answer| answer.into_inner().flag.unwrap_or_default())
    })?;
    if output.json {
        output.json(&json!({ "flag": flag_json(&flag) }));
    } else {
        output.line(&format!("ended: {}", flag_line(&flag)));
    }
    Ok(())
}
