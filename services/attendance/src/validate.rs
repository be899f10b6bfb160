//! A check's request, validated into domain types before anything else is done.

use cpis_domain::{CareSettingType, NhsNumber, OdsCode};
use cpis_mesh::token::Activity;
use cpis_mesh::{ApiError, FieldViolation};
use cpis_proto::attendance::RecordAttendanceRequest;
use cpis_proto::common;

use crate::convert::{micros, setting_type};

/// How far in the future an arrival time may be (clock skew between systems).
const MAX_FUTURE_US: i64 = 5 * 60 * 1_000_000;

/// A valid check.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// The child (or the pregnant woman).
    pub(crate) nhs_number: NhsNumber,
    /// The care setting as given (name and phone kept for notices).
    pub(crate) setting: common::CareSetting,
    /// Its organisation, which must be the user's.
    pub(crate) organisation: OdsCode,
    /// Its type, deciding between a check and a silent view.
    pub(crate) setting_type: CareSettingType,
    /// Arrival, microseconds since the epoch.
    pub(crate) arrival_us: i64,
    /// The caller's id for this check, making retries safe.
    pub(crate) request_id: Option<uuid::Uuid>,
}

impl Check {
    /// The activity this check needs.
    pub(crate) fn activity(&self) -> Activity {
        if self.setting_type.is_unscheduled() {
            Activity::ChildCheck
        } else {
            Activity::ChildView
        }
    }
}

/// Validates `request` at `now_us`, naming every bad field at once.
pub(crate) fn check(request: &RecordAttendanceRequest, now_us: i64) -> Result<Check, ApiError> {
    let mut problems = Vec::new();
    let nhs_number = NhsNumber::parse(
        request
            .nhs_number
            .as_ref()
            .map(|n| n.value.as_str())
            .unwrap_or_default(),
    )
    .map_err(|e| problems.push(FieldViolation::new("nhs_number", e.to_string())))
    .ok();
    let setting = request.care_setting.clone().unwrap_or_default();
    if request.care_setting.is_none() {
        problems.push(FieldViolation::new("care_setting", "is required"));
    }
    let organisation = setting
        .organisation
        .as_ref()
        .map(|o| o.value.as_str())
        .unwrap_or_default()
        .parse::<OdsCode>()
        .map_err(|e| {
            problems.push(FieldViolation::new(
                "care_setting.organisation",
                e.to_string(),
            ));
        })
        .ok();
    let kind = setting_type(setting.setting_type)
        .map_err(|_| {
            problems.push(FieldViolation::new(
                "care_setting.setting_type",
                "is not a care setting type",
            ));
        })
        .ok();
    if let (Some(org), Some(kind)) = (&organisation, kind)
        && let Err(e) = cpis_domain::CareSetting::new(org.clone(), Some(&setting.site), kind)
    {
        problems.push(FieldViolation::new("care_setting.site", e.to_string()));
    }
    for (field, value) in [
        ("care_setting.name", &setting.name),
        ("care_setting.phone", &setting.phone),
    ] {
        if value.chars().count() > 200 || value.chars().any(char::is_control) {
            problems.push(FieldViolation::new(
                field,
                "must be at most 200 printable characters",
            ));
        }
    }
    let arrival_us = match &request.arrival_time {
        None => now_us,
        Some(t) if t.nanos < 0 || t.nanos >= 1_000_000_000 => {
            problems.push(FieldViolation::new("arrival_time", "is not a valid time"));
            now_us
        }
        Some(t) => {
            let us = micros(t);
            if us > now_us.saturating_add(MAX_FUTURE_US) {
                problems.push(FieldViolation::new(
                    "arrival_time",
                    "is more than 5 minutes in the future",
                ));
            }
            us
        }
    };
    let request_id = if request.request_id.is_empty() {
        None
    } else {
        uuid::Uuid::parse_str(&request.request_id)
            .map_err(|_| problems.push(FieldViolation::new("request_id", "is not a UUID")))
            .ok()
    };
    match (nhs_number, organisation, kind) {
        (Some(nhs_number), Some(organisation), Some(setting_type)) if problems.is_empty() => {
            Ok(Check {
                nhs_number,
                setting,
                organisation,
                setting_type,
                arrival_us,
                request_id,
            })
        }
        _ => Err(ApiError::InvalidArgument(problems)),
    }
}
