//! A notification as the JSON body of a webhook delivery: the contract's proto3 JSON
//! mapping of `Notification` (lowerCamelCase names, enums by name, RFC 3339 times, default
//! values left out). It carries exactly what the inbox item carries, nothing more.

use cpis_proto::common::{
    CareSetting, CareSettingType, Date, Flag, FlagKind, FlagState, LookedAfterLegalBasis,
    NhsNumber, OdsCode, Principal,
};
use cpis_proto::notification::{
    AttendanceNotice, EscalationNotice, NhsNumberChangeNotice, Notification, NotificationKind,
    notification,
};
use serde_json::{Map, Value, json};

/// An object of the fields that are set (proto3 JSON leaves default values out).
fn object(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter(|(_, v)| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Bool(b) => *b,
            Value::Object(_) => true,
        })
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Value::Object(map)
}

fn timestamp(t: Option<&prost_types::Timestamp>) -> Value {
    let Some(t) = t else { return Value::Null };
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos),
    )
    .ok()
    .and_then(|at| at.format(&format).ok())
    .map_or(Value::Null, Value::String)
}

fn duration(d: Option<&prost_types::Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        let nanos = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
        let sign = if nanos < 0 { "-" } else { "" };
        let nanos = nanos.unsigned_abs();
        Value::String(format!(
            "{sign}{}.{:09}s",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000
        ))
    })
}

fn ods(o: Option<&OdsCode>) -> Value {
    o.map_or(Value::Null, |o| object([("value", json!(o.value))]))
}

fn nhs(n: Option<&NhsNumber>) -> Value {
    n.map_or(Value::Null, |n| object([("value", json!(n.value))]))
}

fn date(d: Option<&Date>) -> Value {
    d.map_or(Value::Null, |d| {
        object([
            ("year", json!(d.year)),
            ("month", json!(d.month)),
            ("day", json!(d.day)),
        ])
    })
}

/// An enum by name; unspecified (0) is left out; an unknown number stays a number.
fn name<E: TryFrom<i32>>(value: i32, name: impl Fn(&E) -> &'static str) -> Value {
    match E::try_from(value) {
        _ if value == 0 => Value::Null,
        Ok(e) => json!(name(&e)),
        Err(_) => json!(value),
    }
}

fn principal(p: Option<&Principal>) -> Value {
    p.map_or(Value::Null, |p| {
        object([
            ("userId", json!(p.user_id)),
            ("displayName", json!(p.display_name)),
            ("roleProfileId", json!(p.role_profile_id)),
            ("role", json!(p.role)),
            ("organisation", ods(p.organisation.as_ref())),
        ])
    })
}

fn care_setting(c: Option<&CareSetting>) -> Value {
    c.map_or(Value::Null, |c| {
        object([
            ("organisation", ods(c.organisation.as_ref())),
            ("site", json!(c.site)),
            (
                "settingType",
                name(c.setting_type, CareSettingType::as_str_name),
            ),
            ("name", json!(c.name)),
            ("phone", json!(c.phone)),
        ])
    })
}

fn flag(f: &Flag) -> Value {
    object([
        ("flagId", json!(f.flag_id)),
        ("nhsNumber", nhs(f.nhs_number.as_ref())),
        ("kind", name(f.kind, FlagKind::as_str_name)),
        (
            "lookedAfterLegalBasis",
            name(
                f.looked_after_legal_basis,
                LookedAfterLegalBasis::as_str_name,
            ),
        ),
        (
            "expectedDeliveryDate",
            date(f.expected_delivery_date.as_ref()),
        ),
        ("startDate", date(f.start_date.as_ref())),
        ("endDate", date(f.end_date.as_ref())),
        ("deleteDate", date(f.delete_date.as_ref())),
        ("state", name(f.state, FlagState::as_str_name)),
        (
            "authority",
            f.authority.as_ref().map_or(Value::Null, |a| {
                object([("code", ods(a.code.as_ref())), ("name", json!(a.name))])
            }),
        ),
        (
            "contacts",
            f.contacts.as_ref().map_or(Value::Null, |c| {
                object([
                    ("officeHoursPhone", json!(c.office_hours_phone)),
                    ("emergencyDutyPhone", json!(c.emergency_duty_phone)),
                    ("secureEmail", json!(c.secure_email)),
                ])
            }),
        ),
        ("caseReference", json!(f.case_reference)),
        // int64 is a string in proto3 JSON.
        (
            "version",
            if f.version == 0 {
                Value::Null
            } else {
                json!(f.version.to_string())
            },
        ),
        ("updateTime", timestamp(f.update_time.as_ref())),
        ("updatedBy", json!(f.updated_by)),
    ])
}

fn attendance(a: Option<&AttendanceNotice>) -> Value {
    a.map_or(Value::Null, |a| {
        object([
            ("attendanceId", json!(a.attendance_id)),
            ("nhsNumber", nhs(a.nhs_number.as_ref())),
            ("careSetting", care_setting(a.care_setting.as_ref())),
            ("practitioner", principal(a.practitioner.as_ref())),
            ("arrivalTime", timestamp(a.arrival_time.as_ref())),
            ("flags", Value::Array(a.flags.iter().map(flag).collect())),
        ])
    })
}

fn escalation(e: &EscalationNotice) -> Value {
    object([
        (
            "escalatedNotificationId",
            json!(e.escalated_notification_id),
        ),
        ("attendance", attendance(e.attendance.as_ref())),
        ("unacknowledgedFor", duration(e.unacknowledged_for.as_ref())),
    ])
}

fn change(c: &NhsNumberChangeNotice) -> Value {
    object([
        ("nhsNumber", nhs(c.nhs_number.as_ref())),
        ("supersededBy", nhs(c.superseded_by.as_ref())),
        ("caseReference", json!(c.case_reference)),
        ("uploadId", json!(c.upload_id)),
        (
            "sequenceNumber",
            if c.sequence_number == 0 {
                Value::Null
            } else {
                json!(c.sequence_number.to_string())
            },
        ),
    ])
}

/// The JSON body of a delivery of `n`.
pub fn notification_json(n: &Notification) -> Value {
    let (key, payload) = match &n.payload {
        Some(notification::Payload::Attendance(a)) => ("attendance", attendance(Some(a))),
        Some(notification::Payload::Escalation(e)) => ("escalation", escalation(e)),
        Some(notification::Payload::NhsNumberChange(c)) => ("nhsNumberChange", change(c)),
        None => ("attendance", Value::Null),
    };
    object([
        ("notificationId", json!(n.notification_id)),
        ("authority", ods(n.authority.as_ref())),
        ("kind", name(n.kind, NotificationKind::as_str_name)),
        (key, payload),
        ("eventId", json!(n.event_id)),
        ("occurTime", timestamp(n.occur_time.as_ref())),
        ("createTime", timestamp(n.create_time.as_ref())),
        ("occurrenceCount", json!(n.occurrence_count)),
        ("lastOccurTime", timestamp(n.last_occur_time.as_ref())),
        (
            "acknowledgement",
            n.acknowledgement.as_ref().map_or(Value::Null, |a| {
                object([
                    ("acknowledgeTime", timestamp(a.acknowledge_time.as_ref())),
                    ("acknowledgedBy", principal(a.acknowledged_by.as_ref())),
                ])
            }),
        ),
        ("cursor", json!(n.cursor)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_follows_the_proto3_json_mapping() {
        let n = Notification {
            notification_id: "0193".into(),
            authority: Some(OdsCode {
                value: "E09000033".into(),
            }),
            kind: NotificationKind::Attendance as i32,
            payload: Some(notification::Payload::Attendance(AttendanceNotice {
                attendance_id: "att-1".into(),
                nhs_number: Some(NhsNumber {
                    value: "9434765919".into(),
                }),
                ..AttendanceNotice::default()
            })),
            occur_time: Some(prost_types::Timestamp {
                seconds: 1_760_000_000,
                nanos: 0,
            }),
            occurrence_count: 2,
            ..Notification::default()
        };
        let body = notification_json(&n);
        assert_eq!(body["kind"], "NOTIFICATION_KIND_ATTENDANCE");
        assert_eq!(body["authority"]["value"], "E09000033");
        assert_eq!(body["attendance"]["nhsNumber"]["value"], "9434765919");
        assert_eq!(body["occurTime"], "2025-10-09T08:53:20Z");
        assert_eq!(body["occurrenceCount"], 2);
        assert!(body.get("acknowledgement").is_none());
        assert!(body.get("eventId").is_none());
        assert_eq!(
            duration(Some(&prost_types::Duration {
                seconds: 900,
                nanos: 0
            })),
            "900.000000000s"
        );
    }
}
