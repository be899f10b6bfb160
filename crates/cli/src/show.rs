//! Words and JSON for the mesh's messages, shared by the commands that print them.

use cpis_proto::common::{self, CareSettingType, FlagKind, FlagState};
use serde_json::{Value, json};

/// `2026-11-25` from a wire date.
pub(crate) fn date(d: Option<&common::Date>) -> String {
    d.map_or_else(String::new, |d| {
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
    })
}

/// `2026-11-25 07:30 UTC` from a timestamp.
pub(crate) fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map_or_else(String::new, |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
}

/// RFC 3339 from a timestamp, for JSON.
pub(crate) fn rfc3339(t: Option<&prost_types::Timestamp>) -> Value {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// A flag kind in words.
pub(crate) fn kind(value: i32) -> &'static str {
    match FlagKind::try_from(value) {
        Ok(FlagKind::ChildProtectionPlan) => "child protection plan",
        Ok(FlagKind::LookedAfterChild) => "looked-after child",
        Ok(FlagKind::UnbornChildProtectionPlan) => "unborn child protection plan",
        _ => "unknown kind",
    }
}

/// A flag state in words.
pub(crate) fn state(value: i32) -> &'static str {
    match FlagState::try_from(value) {
        Ok(FlagState::Current) => "current",
        Ok(FlagState::RecentlyEnded) => "recently ended",
        Ok(FlagState::History) => "history",
        _ => "unknown",
    }
}

/// A care setting type in words (`emergency department`).
pub(crate) fn setting_type(value: i32) -> String {
    CareSettingType::try_from(value)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("CARE_SETTING_TYPE_")
                .to_ascii_lowercase()
                .replace('_', " ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Whether a setting type is scheduled care (GP practice, health visiting, school nursing,
/// other scheduled), which needs `child.view` rather than `child.check`.
pub(crate) fn is_scheduled(value: i32) -> bool {
    matches!(
        CareSettingType::try_from(value),
        Ok(CareSettingType::GpPractice
            | CareSettingType::HealthVisiting
            | CareSettingType::SchoolNursing
            | CareSettingType::OtherScheduled)
    )
}

/// An ODS code's text.
pub(crate) fn ods(code: Option<&common::OdsCode>) -> String {
    code.map(|c| c.value.clone()).unwrap_or_default()
}

/// A care setting as `name (ORG site)`.
pub(crate) fn setting(s: Option<&common::CareSetting>) -> String {
    s.map_or_else(String::new, |s| {
        let org = ods(s.organisation.as_ref());
        let place = if s.site.is_empty() {
            org
        } else {
            format!("{org} {}", s.site)
        };
        if s.name.is_empty() {
            place
        } else {
            format!("{} ({place})", s.name)
        }
    })
}

/// A care setting as JSON.
pub(crate) fn setting_json(s: Option<&common::CareSetting>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({
            "organisation": ods(s.organisation.as_ref()),
            "site": s.site,
            "type": setting_type(s.setting_type),
            "name": s.name,
            "phone": s.phone,
        })
    })
}

/// A flag as JSON (with its authority's contacts).
pub(crate) fn flag_json(f: &common::Flag) -> Value {
    let contacts = f.contacts.as_ref();
    json!({
        "flag_id": f.flag_id,
        "nhs_number": f.nhs_number.as_ref().map(|n| n.value.clone()),
        "kind": kind(f.kind),
        "state": state(f.state),
        "start_date": date(f.start_date.as_ref()),
        "end_date": date(f.end_date.as_ref()),
        "expected_delivery_date": date(f.expected_delivery_date.as_ref()),
        "case_reference": f.case_reference,
        "authority": {
            "code": f.authority.as_ref().map(|a| ods(a.code.as_ref())),
            "name": f.authority.as_ref().map(|a| a.name.clone()),
        },
        "contacts": {
            "office_hours_phone": contacts.map(|c| c.office_hours_phone.clone()),
            "emergency_duty_phone": contacts.map(|c| c.emergency_duty_phone.clone()),
            "secure_email": contacts.map(|c| c.secure_email.clone()),
        },
    })
}

/// A flag in lines for people.
pub(crate) fn flag_lines(f: &common::Flag) -> Vec<String> {
    let authority = f.authority.as_ref();
    let mut lines = vec![format!(
        "FLAG: {} ({}), since {}{}",
        kind(f.kind),
        state(f.state),
        date(f.start_date.as_ref()),
        if f.end_date.is_some() {
            format!(", ended {}", date(f.end_date.as_ref()))
        } else {
            String::new()
        }
    )];
    if f.expected_delivery_date.is_some() {
        lines.push(format!(
            "  Expected delivery: {}",
            date(f.expected_delivery_date.as_ref())
        ));
    }
    lines.push(format!(
        "  Authority: {} ({}), case {}",
        authority.map(|a| a.name.as_str()).unwrap_or_default(),
        ods(authority.and_then(|a| a.code.as_ref())),
        f.case_reference
    ));
    if let Some(c) = &f.contacts {
        if !c.office_hours_phone.is_empty() {
            lines.push(format!("  Office hours:   {}", c.office_hours_phone));
        }
        lines.push(format!("  Emergency duty: {}", c.emergency_duty_phone));
        if !c.secure_email.is_empty() {
            lines.push(format!("  Secure email:   {}", c.secure_email));
        }
    }
    lines
}

/// An activity's code (`child.check`).
pub(crate) fn activity(value: i32) -> String {
    cpis_proto::identity::Activity::try_from(value)
        .map(|a| {
            a.as_str_name()
                .trim_start_matches("ACTIVITY_")
                .to_ascii_lowercase()
                .replacen('_', ".", 1)
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}
