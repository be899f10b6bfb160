//! `cpis check`: the clinician's question — is this child flagged, whom do I call, where
//! else has the child been seen — asked as the signed-in user at a care setting.

use clap::Args;
use cpis_proto::attendance::RecordAttendanceRequest;
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::common::{self, CareSetting};
use cpis_proto::identity::GetOrganisationRequest;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use serde_json::json;

use crate::failure::Failure;
use crate::output::{Output, Table};
use crate::remote::{Remote, Service, Session};
use crate::show;

/// `cpis check NHS_NUMBER`
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The child's NHS number (or the mother's, for an unborn child's plan); spaces allowed.
    nhs_number: String,
    /// The care setting's organisation (ODS code); by default the signed-in user's.
    #[arg(long)]
    setting: Option<String>,
    /// The setting's site code, when the organisation has several.
    #[arg(long)]
    site: Option<String>,
    /// A scheduled setting (GP practice, health visiting, school nursing), which needs
    /// child.view; by default unscheduled care, which needs child.check.
    #[arg(long)]
    scheduled: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `cpis check`.
pub(crate) fn run(args: CheckArgs, output: Output) -> Result<(), Failure> {
    let number: cpis_domain::NhsNumber = args
        .nhs_number
        .parse()
        .map_err(|e| Failure::usage(format!("NHS number `{}`: {e}", args.nhs_number)))?;
    let organisation = match &args.setting {
        Some(ods) => ods.trim().to_ascii_uppercase(),
        None => Session::load(&args.remote.data_dir)?
            .map(|s| s.organisation)
            .ok_or_else(|| {
                Failure::usage("say where the child is: --setting ODS (or run `cpis login`)")
            })?,
    };
    let runtime = crate::remote::runtime()?;
    runtime.block_on(async {
        let setting = find_setting(&args, &organisation).await?;
        let request = args.remote.authorized(RecordAttendanceRequest {
            nhs_number: Some(common::NhsNumber {
                value: number.as_str().to_owned(),
            }),
            care_setting: Some(setting.clone()),
            arrival_time: None,
            request_id: uuid::Uuid::new_v4().to_string(),
        })?;
        let mut client = AttendanceServiceClient::new(args.remote.channel(Service::Attendance)?);
        let answer = client
            .record_attendance(request)
            .await
            .map_err(|s| Failure::from_status("the check", &s))?
            .into_inner();
        if output.json {
            output.json(&json!({
                "check_id": answer.check_id,
                "nhs_number": number.as_str(),
                "care_setting": show::setting_json(Some(&setting)),
                "check_time": show::rfc3339(answer.check_time.as_ref()),
                "flags": answer.flags.iter().map(show::flag_json).collect::<Vec<_>>(),
                "recent_attendances": answer.recent_attendances.iter().map(|a| json!({
                    "arrival_time": show::rfc3339(a.arrival_time.as_ref()),
                    "care_setting": show::setting_json(a.care_setting.as_ref()),
                })).collect::<Vec<_>>(),
                "authorities_notified": answer.authorities_notified,
            }));
            return Ok(());
        }
        output.line(&format!(
            "{number} at {} ({})",
            show::setting(Some(&setting)),
            show::time(answer.check_time.as_ref())
        ));
        output.line("");
        if answer.flags.is_empty() {
            output.line("No child protection information is held for this NHS number.");
        }
        for flag in &answer.flags {
            for line in show::flag_lines(flag) {
                output.line(&line);
            }
            output.line("");
        }
        if !answer.recent_attendances.is_empty() {
            output.line("Recent attendances (latest first):");
            let mut table = Table::new(&["when", "where", "setting"]);
            for a in &answer.recent_attendances {
                table.row(vec![
                    show::time(a.arrival_time.as_ref()),
                    show::setting(a.care_setting.as_ref()),
                    a.care_setting
                        .as_ref()
                        .map(|s| show::setting_type(s.setting_type))
                        .unwrap_or_default(),
                ]);
            }
            table.print();
        }
        if answer.authorities_notified {
            output.line("");
            output.line("The authority has been told of this attendance.");
        }
        Ok(())
    })
}

/// The organisation's setting to check at: the one with `--site`, else its first setting
/// of the requested kind (scheduled or unscheduled).
async fn find_setting(args: &CheckArgs, organisation: &str) -> Result<CareSetting, Failure> {
    let mut identity = IdentityServiceClient::new(args.remote.channel(Service::Identity)?);
    let request = args.remote.authorized(GetOrganisationRequest {
        code: Some(common::OdsCode {
            value: organisation.to_owned(),
        }),
    })?;
    let found = identity
        .get_organisation(request)
        .await
        .map_err(|s| Failure::from_status(&format!("organisation {organisation}"), &s))?
        .into_inner()
        .organisation
        .unwrap_or_default();
    let settings = found.care_settings;
    let chosen = match &args.site {
        Some(site) => settings.iter().find(|s| s.site.eq_ignore_ascii_case(site)),
        None => settings
            .iter()
            .find(|s| show::is_scheduled(s.setting_type) == args.scheduled),
    };
    let kind = if args.scheduled {
        "scheduled"
    } else {
        "unscheduled-care"
    };
    let mut setting = chosen.cloned().ok_or_else(|| {
        Failure::usage(format!(
            "{organisation} has no {} setting{}; its settings: {}",
            kind,
            args.site
                .as_ref()
                .map(|s| format!(" at site {s}"))
                .unwrap_or_default(),
            settings
                .iter()
                .map(|s| format!("{} {}", s.site, show::setting_type(s.setting_type)))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if setting.organisation.is_none() {
        setting.organisation = Some(common::OdsCode {
            value: organisation.to_owned(),
        });
    }
    Ok(setting)
}
