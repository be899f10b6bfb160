//! The audit events of inbox reads and acknowledgements, written to the outbox and shipped
//! to the audit service by the mesh's relay.
//!
//! Actions (stable names, listed in `docs/api/notification.md`):
//! `notification.inbox.list`, `notification.inbox.subscribe`,
//! `notification.inbox.acknowledge`, `notification.webhook.register`,
//! `notification.webhook.rotate_secret`, `notification.webhook.unregister`.

use cpis_mesh::authz::Caller;
use cpis_mesh::outbox::{NewOutboxEvent, OutboxError};
use cpis_mesh::token::Principal;
use cpis_proto::audit::{Actor, AuditEvent, AuditOutcome, actor};
use cpis_proto::common::OdsCode;

use crate::convert::{now_us, principal, timestamp};

/// A page of an inbox read.
pub const LIST: &str = "notification.inbox.list";
/// A live stream of an inbox opened.
pub const SUBSCRIBE: &str = "notification.inbox.subscribe";
/// Notifications acknowledged.
pub const ACKNOWLEDGE: &str = "notification.inbox.acknowledge";

/// A webhook registered.
pub const WEBHOOK_REGISTER: &str = "notification.webhook.register";
/// A webhook's secret replaced.
pub const WEBHOOK_ROTATE_SECRET: &str = "notification.webhook.rotate_secret";
/// A webhook unregistered.
pub const WEBHOOK_UNREGISTER: &str = "notification.webhook.unregister";

/// The audit event of `action` by `user` (through `caller`) on `authority`'s inbox.
pub(crate) fn inbox_event(
    action: &str,
    caller: Option<&Caller>,
    user: &Principal,
    authority: &str,
    reason: String,
) -> Result<NewOutboxEvent, OutboxError> {
    event(action, caller, user, format!("inbox:{authority}"), reason)
}

/// The audit event of `action` by `user` (through `caller`) on webhook `id` (the reason
/// names the URL's host, never a secret).
pub(crate) fn webhook_event(
    action: &str,
    caller: Option<&Caller>,
    user: &Principal,
    id: uuid::Uuid,
    reason: String,
) -> Result<NewOutboxEvent, OutboxError> {
    event(action, caller, user, format!("webhook:{id}"), reason)
}

fn event(
    action: &str,
    caller: Option<&Caller>,
    user: &Principal,
    target: String,
    reason: String,
) -> Result<NewOutboxEvent, OutboxError> {
    let calling_system = caller
        .and_then(Caller::org_system)
        .map(ToString::to_string)
        .unwrap_or_default();
    NewOutboxEvent::audit(AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_time: Some(timestamp(now_us())),
        actor: Some(Actor {
            kind: Some(actor::Kind::User(principal(user))),
            calling_system,
        }),
        action: action.to_owned(),
        nhs_number: None,
        outcome: AuditOutcome::Success as i32,
        reason,
        care_setting: None,
        organisation: Some(OdsCode {
            value: user.organisation.as_str().to_owned(),
        }),
        target,
        // The outbox fills it from the current span.
        trace_context: None,
    })
}
