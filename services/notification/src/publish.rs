//! `Publish`: checking producers' events and turning them into inbox notifications.

use cpis_mesh::FieldViolation;
use cpis_proto::common::NhsNumber;
use cpis_proto::notification::{
    AttendanceNotice, Notification, NotificationEvent, NotificationKind, notification,
    notification_event,
};
use prost::Message;
use uuid::Uuid;

use crate::convert::micros;
use crate::store::NewNotification;

/// Normalises a required NHS number to its 10 digits, or reports it.
fn nhs_number(number: Option<&mut NhsNumber>, field: String, problems: &mut Vec<FieldViolation>) {
    match number {
        Some(number) => match number.value.parse::<cpis_domain::NhsNumber>() {
            Ok(valid) => number.value = valid.as_str().to_owned(),
            // The error names the rule, never the number.
            Err(error) => problems.push(FieldViolation::new(field, error.to_string())),
        },
        None => problems.push(FieldViolation::new(field, "is required")),
    }
}

/// Checks one event (problems reported under `prefix`, e.g. `events[2]`) and makes its
/// notification.
pub(crate) fn notification_of(
    mut event: NotificationEvent,
    prefix: &str,
    problems: &mut Vec<FieldViolation>,
) -> Option<NewNotification> {
    let before = problems.len();
    let bad = |problems: &mut Vec<FieldViolation>, field: &str, description: &str| {
        problems.push(FieldViolation::new(
            format!("{prefix}.{field}"),
            description,
        ));
    };
    let event_id = Uuid::parse_str(&event.event_id).ok();
    if event_id.is_none() {
        bad(problems, "event_id", "must be a UUID");
    }
    let authority = event
        .authority
        .as_ref()
        .map(|a| a.value.parse::<cpis_domain::OdsCode>());
    match &authority {
        Some(Ok(_)) => {}
        Some(Err(error)) => bad(problems, "authority", &error.to_string()),
        None => bad(problems, "authority", "is required"),
    }
    if event.occur_time.is_none() {
        bad(problems, "occur_time", "is required");
    }
    let kind = NotificationKind::try_from(event.kind).ok();
    let payload = match (kind, event.payload.take()) {
        (
            Some(NotificationKind::Attendance),
            Some(notification_event::Payload::Attendance(mut a)),
        ) => {
            nhs_number(
                a.nhs_number.as_mut(),
                format!("{prefix}.attendance.nhs_number"),
                problems,
            );
            if a.care_setting.is_none() {
                bad(problems, "attendance.care_setting", "is required");
            }
            Some(notification::Payload::Attendance(a))
        }
        (
            Some(k @ (NotificationKind::NhsNumberSuperseded | NotificationKind::NhsNumberInactive)),
            Some(notification_event::Payload::NhsNumberChange(mut c)),
        ) => {
            nhs_number(
                c.nhs_number.as_mut(),
                format!("{prefix}.nhs_number_change.nhs_number"),
                problems,
            );
            if k == NotificationKind::NhsNumberSuperseded {
                nhs_number(
                    c.superseded_by.as_mut(),
                    format!("{prefix}.nhs_number_change.superseded_by"),
                    problems,
                );
            }
            Some(notification::Payload::NhsNumberChange(c))
        }
        (Some(NotificationKind::Unspecified) | None, _) => {
            bad(
                problems,
                "kind",
                "is required: attendance or an NHS number change",
            );
            None
        }
        (Some(NotificationKind::Escalation), _) => {
            bad(
                problems,
                "kind",
                "escalations are made by the notification service, never published",
            );
            None
        }
        (Some(_), None) => {
            bad(problems, "payload", "is required");
            None
        }
        (Some(_), Some(_)) => {
            bad(problems, "payload", "does not match the kind");
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    let (event_id, Some(Ok(authority)), Some(occur), Some(kind), Some(payload)) =
        (event_id?, authority, event.occur_time, kind, payload)
    else {
        return None;
    };
    let notification_id = Uuid::now_v7();
    let body = Notification {
        notification_id: notification_id.to_string(),
        authority: Some(cpis_proto::common::OdsCode {
            value: authority.as_str().to_owned(),
        }),
        kind: kind as i32,
        payload: Some(payload),
        event_id: event_id.to_string(),
        occur_time: Some(occur),
        create_time: None,
        occurrence_count: 1,
        last_occur_time: Some(occur),
        acknowledgement: None,
        cursor: String::new(),
    };
    let fold_key = match &body.payload {
        Some(notification::Payload::Attendance(a)) => Some(fold_key(a)),
        _ => None,
    };
    Some(NewNotification {
        notification_id,
        event_id: Some(event_id),
        authority: authority.into_string(),
        kind: kind as i32,
        body: body.encode_to_vec(),
        occur_time_us: micros(&occur),
        fold_key,
        escalate_at_us: None,
    })
}

/// What repeated attendances of the same child at the same setting share: a SHA-256 of
/// the NHS number and the setting (organisation, site, type), so the key column holds no
/// NHS number in clear.
fn fold_key(a: &AttendanceNotice) -> String {
    let setting = a.care_setting.as_ref();
    let text = format!(
        "{}|{}|{}|{}",
        a.nhs_number.as_ref().map_or("", |n| n.value.as_str()),
        setting
            .and_then(|s| s.organisation.as_ref())
            .map_or("", |o| o.value.as_str()),
        setting.map_or("", |s| s.site.as_str()),
        setting.map_or(0, |s| s.setting_type),
    );
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
