//! The audit events identity produces: sign-ins (success and failure), traces of persons and
//! directory changes. Each is written to the outbox in the transaction of what it records.
//!
//! Actions (stable names, listed in `docs/api/identity.md`): `identity.sign_in`,
//! `identity.trace_person`, `identity.directory.create_user`, `identity.directory.disable_user`,
//! `identity.directory.create_role_profile`, `identity.directory.disable_role_profile`,
//! `identity.directory.import`, `identity.persons.import`.

use cpis_domain::NhsNumber;
use cpis_mesh::authz::Caller;
use cpis_proto::audit::{Actor, AuditEvent, AuditOutcome, actor};
use cpis_proto::common;
use time::OffsetDateTime;

/// Sign-in, successful or not.
pub const SIGN_IN: &str = "identity.sign_in";
/// A demographics trace of one NHS number.
pub const TRACE_PERSON: &str = "identity.trace_person";
/// A user added.
pub const CREATE_USER: &str = "identity.directory.create_user";
/// A user disabled.
pub const DISABLE_USER: &str = "identity.directory.disable_user";
/// A role profile added.
pub const CREATE_ROLE_PROFILE: &str = "identity.directory.create_role_profile";
/// A role profile disabled.
pub const DISABLE_ROLE_PROFILE: &str = "identity.directory.disable_role_profile";
/// An entry of the directory created or changed by an import.
pub const IMPORT_DIRECTORY: &str = "identity.directory.import";
/// A batch of persons imported into the register.
pub const IMPORT_PERSONS: &str = "identity.persons.import";

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

    /// A local tool acting on its own account (`cpis identity ...`).
    pub fn tool(name: &str) -> Self {
        Self {
            workload: Some(name.to_owned()),
            ..Self::default()
        }
    }

    /// The same peer, acting for a signed-in user.
    pub fn with_user(mut self, user: common::Principal) -> Self {
        self.organisation = user.organisation.as_ref().map(|o| o.value.clone());
        self.workload = None;
        self.user = Some(user);
        self
    }

    /// An event of `action` by this actor, now, in the current trace.
    pub fn event(&self, action: &str, outcome: AuditOutcome) -> AuditEventBuilder {
        let kind = match (&self.user, &self.workload) {
            (Some(user), _) => Some(actor::Kind::User(user.clone())),
            (None, Some(workload)) => Some(actor::Kind::Workload(workload.clone())),
            (None, None) => None,
        };
        AuditEventBuilder(AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_time: Some(timestamp(OffsetDateTime::now_utc())),
            actor: Some(Actor {
                kind,
                calling_system: self.calling_system.clone(),
            }),
            action: action.to_owned(),
            nhs_number: None,
            outcome: outcome as i32,
            reason: String::new(),
            care_setting: None,
            organisation: self.organisation.as_ref().map(|value| common::OdsCode {
                value: value.clone(),
            }),
            target: String::new(),
            // The outbox fills it from the current span when the event is enqueued.
            trace_context: None,
        })
    }
}

/// An audit event being filled in.
#[derive(Debug, Clone)]
pub struct AuditEventBuilder(AuditEvent);

impl AuditEventBuilder {
    /// Why (a denial reason, an outcome).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.0.reason = reason.into();
        self
    }

    /// The object acted on (`user:<id>`, `organisation:RJ1`).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.0.target = target.into();
        self
    }

    /// The person concerned.
    pub fn person(mut self, number: &NhsNumber) -> Self {
        self.0.nhs_number = Some(common::NhsNumber {
            value: number.as_str().to_owned(),
        });
        self
    }

    /// The event.
    pub fn build(self) -> AuditEvent {
        self.0
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: i32::try_from(at.nanosecond()).unwrap_or_default(),
    }
}
