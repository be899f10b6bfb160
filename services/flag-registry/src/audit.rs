//! The audit events the registry produces, written to the outbox (in the transaction of the
//! write they record, or on their own for reads and refusals).
//!
//! Actions (stable names, listed in `docs/api/flags.md`): `flags.upsert`, `flags.end`,
//! `flags.get`, `flags.list`, `flags.upload`, `flags.upload_report`.

use cpis_domain::NhsNumber;
use cpis_mesh::authz::Caller;
use cpis_mesh::token::Principal;
use cpis_proto::audit::{Actor, AuditEvent, AuditOutcome, actor};
use cpis_proto::common;
use time::OffsetDateTime;

/// A flag created or replaced (or an upsert refused by the trace).
pub const UPSERT: &str = "flags.upsert";
/// A flag ended.
pub const END: &str = "flags.end";
/// The flags of one NHS number read for a check.
pub const GET: &str = "flags.get";
/// An authority's flags listed.
pub const LIST: &str = "flags.list";
/// A bulk upload (one event for the upload, one per child whose flag it wrote).
pub const UPLOAD: &str = "flags.upload";
/// An upload's report read.
pub const UPLOAD_REPORT: &str = "flags.upload_report";

/// Who is acting, as audit events name them.
#[derive(Debug, Clone, Default)]
pub struct AuditActor {
    user: Option<common::Principal>,
    workload: Option<String>,
    calling_system: String,
    organisation: Option<String>,
}

impl AuditActor {
    /// The peer of a call, before any user is known.
    pub fn from_caller(caller: &Caller) -> Self {
        match caller {
            Caller::Service(w) | Caller::Edge(w) => Self {
                workload: Some(w.to_string()),
                ..Self::default()
            },
            Caller::OrgSystem { system, .. } => Self {
                calling_system: system.to_string(),
                organisation: Some(system.organisation.to_string()),
                ..Self::default()
            },
        }
    }

    /// The same peer, acting for a signed-in user.
    pub fn with_user(mut self, user: &Principal) -> Self {
        self.organisation = Some(user.organisation.as_str().to_owned());
        self.user = Some(common::Principal {
            user_id: user.user_id.clone(),
            display_name: String::new(),
            role_profile_id: user.role_profile.clone(),
            role: user.role.clone(),
            organisation: Some(common::OdsCode {
                value: user.organisation.as_str().to_owned(),
            }),
        });
        self
    }

    /// An event of `action` by this actor, now, about `person` (if any).
    pub fn event(
        &self,
        action: &str,
        outcome: AuditOutcome,
        person: Option<&NhsNumber>,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> AuditEvent {
        let kind = match (&self.user, &self.workload) {
            (Some(user), _) => Some(actor::Kind::User(user.clone())),
            (None, Some(workload)) => Some(actor::Kind::Workload(workload.clone())),
            (None, None) => None,
        };
        AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_time: Some(timestamp(OffsetDateTime::now_utc())),
            actor: Some(Actor {
                kind,
                calling_system: self.calling_system.clone(),
            }),
            action: action.to_owned(),
            nhs_number: person.map(|n| common::NhsNumber {
                value: n.as_str().to_owned(),
            }),
            outcome: outcome as i32,
            reason: reason.into(),
            care_setting: None,
            organisation: self.organisation.as_ref().map(|value| common::OdsCode {
                value: value.clone(),
            }),
            target: target.into(),
            // The outbox fills it from the current span when the event is enqueued.
            trace_context: None,
        }
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: i32::try_from(at.nanosecond()).unwrap_or_default(),
    }
}
