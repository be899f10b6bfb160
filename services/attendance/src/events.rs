//! The outbox events of a check: its audit event, and the attendance notices of the
//! authorities to notify.
//!
//! Actions (stable names, listed in `docs/api/attendance.md`): `attendance.check` (an
//! unscheduled setting), `attendance.view` (a scheduled one), `attendance.list` (an
//! authority's attendances listed).

use cpis_mesh::Caller;
use cpis_mesh::outbox::{NewOutboxEvent, OutboxError};
use cpis_proto::audit::{Actor, AuditEvent, AuditOutcome, actor};
use cpis_proto::common::{self, OdsCode};
use cpis_proto::notification::{
    AttendanceNotice, NotificationEvent, NotificationKind, notification_event,
};
use uuid::Uuid;

use crate::convert::timestamp;
use crate::validate::Check;

/// A check at an unscheduled setting.
pub const CHECK: &str = "attendance.check";
/// A silent view from a scheduled setting.
pub const VIEW: &str = "attendance.view";

/// The audit event of `check` by `user`, with id `check_id`.
pub(crate) fn audit(
    check_id: Uuid,
    check: &Check,
    caller: Option<&Caller>,
    user: &common::Principal,
    now_us: i64,
    reason: String,
    attendance_id: Option<Uuid>,
) -> Result<NewOutboxEvent, OutboxError> {
    let calling_system = caller
        .and_then(Caller::org_system)
        .map(ToString::to_string)
        .unwrap_or_default();
    NewOutboxEvent::audit(AuditEvent {
        event_id: check_id.to_string(),
        event_time: Some(timestamp(now_us)),
        actor: Some(Actor {
            kind: Some(actor::Kind::User(user.clone())),
            calling_system,
        }),
        action: if check.setting_type.is_unscheduled() {
            CHECK
        } else {
            VIEW
        }
        .to_owned(),
        nhs_number: Some(common::NhsNumber {
            value: check.nhs_number.as_str().to_owned(),
        }),
        outcome: AuditOutcome::Success as i32,
        reason,
        care_setting: Some(check.setting.clone()),
        organisation: user.organisation.clone(),
        target: attendance_id
            .map(|id| format!("attendance:{id}"))
            .unwrap_or_default(),
        // The outbox fills it from the current span.
        trace_context: None,
    })
}

/// The notice to `authority` of attendance `attendance_id`, showing its own `flags`.
pub(crate) fn notice(
    authority: &str,
    attendance_id: Uuid,
    check: &Check,
    user: &common::Principal,
    now_us: i64,
    flags: Vec<common::Flag>,
) -> Result<NewOutboxEvent, OutboxError> {
    NewOutboxEvent::notification(NotificationEvent {
        // A fresh v7 from the outbox.
        event_id: String::new(),
        authority: Some(OdsCode {
            value: authority.to_owned(),
        }),
        kind: NotificationKind::Attendance as i32,
        occur_time: Some(timestamp(now_us)),
        trace_context: None,
        payload: Some(notification_event::Payload::Attendance(AttendanceNotice {
            attendance_id: attendance_id.to_string(),
            nhs_number: Some(common::NhsNumber {
                value: check.nhs_number.as_str().to_owned(),
            }),
            care_setting: Some(check.setting.clone()),
            practitioner: Some(user.clone()),
            arrival_time: Some(timestamp(check.arrival_us)),
            flags,
        })),
    })
}

/// An authority's attendances listed.
pub const LIST: &str = "attendance.list";

/// The audit event of `user` listing `authority`'s attendances (of one child, when given).
pub(crate) fn list(
    caller: Option<&Caller>,
    user: &common::Principal,
    authority: &str,
    nhs_number: Option<&str>,
    now_us: i64,
    reason: String,
) -> Result<NewOutboxEvent, OutboxError> {
    let calling_system = caller
        .and_then(Caller::org_system)
        .map(ToString::to_string)
        .unwrap_or_default();
    NewOutboxEvent::audit(AuditEvent {
        event_id: Uuid::now_v7().to_string(),
        event_time: Some(timestamp(now_us)),
        actor: Some(Actor {
            kind: Some(actor::Kind::User(user.clone())),
            calling_system,
        }),
        action: LIST.to_owned(),
        nhs_number: nhs_number.map(|n| common::NhsNumber {
            value: n.to_owned(),
        }),
        outcome: AuditOutcome::Success as i32,
        reason,
        care_setting: None,
        organisation: user.organisation.clone(),
        target: format!("attendances:{authority}"),
        trace_context: None,
    })
}
