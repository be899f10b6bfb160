//! The RPCs of the contracts as the edge sees them: their shape (read from the descriptor
//! set, so the routes follow `proto/`) and their effect (one table, written here, so that a
//! retry is a decision someone made, not a guess).

use prost::Message;
use prost_types::FileDescriptorSet;

use crate::RenderError;
use crate::layout::Workload;

use Effect::{IdempotentWrite, Read, Write};
use Pace::{Bulk, Interactive};

/// What calling an RPC twice does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Changes nothing (reads; their audit events record accesses, which did happen).
    Read,
    /// Changes something once: a repeat is answered without a second change (by event id,
    /// by "the first acknowledgement is kept", by "importing the same file changes nothing").
    IdempotentWrite,
    /// A repeat may change something again or answer differently (a second token, a
    /// second attendance, ABORTED on a version the first attempt moved on).
    Write,
}

impl Effect {
    /// Whether the edge may send the call again after an upstream failure.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Self::Read | Self::IdempotentWrite)
    }
}

/// How long an RPC may take, beyond its streaming shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A person is waiting.
    Interactive,
    /// Whole files: directories, uploads, imports.
    Bulk,
}

/// One method's row of [`RPC_TABLE`]: its name, effect and pace.
pub type RpcClass = (&'static str, Effect, Pace);

/// Every RPC of every contract, by gRPC service, with its effect and pace. A test fails
/// when an RPC of `proto/` is missing here, or when this names one that is gone.
pub const RPC_TABLE: &[(&str, &[RpcClass])] = &[
    (
        "cpis.identity.v1.IdentityService",
        &[
            ("IssueToken", Write, Interactive),
            ("GetSigningKeys", Read, Interactive),
            ("Authorize", Read, Interactive),
            ("GetOrganisation", Read, Interactive),
            ("ListOrganisations", Read, Interactive),
            ("TracePerson", Read, Interactive),
            ("TracePeople", Read, Interactive),
            ("CreateUser", Write, Interactive),
            ("DisableUser", IdempotentWrite, Interactive),
            ("ListUsers", Read, Interactive),
            ("CreateRoleProfile", Write, Interactive),
            ("DisableRoleProfile", IdempotentWrite, Interactive),
            ("ImportDirectory", IdempotentWrite, Bulk),
            ("ExportDirectory", Read, Bulk),
            // A client stream: never retried whatever its effect (the edge would have to
            // buffer it).
            ("ImportPersons", Write, Bulk),
        ],
    ),
    (
        "cpis.flags.v1.FlagRegistryService",
        &[
            // UpsertFlag and EndFlag carry `expected_version`, which a first attempt that
            // succeeded moves on: a repeat would answer ABORTED.
            ("UpsertFlag", Write, Interactive),
            ("EndFlag", Write, Interactive),
            ("GetFlags", Read, Interactive),
            ("ListFlags", Read, Interactive),
            ("GetUploadReport", Read, Interactive),
            ("BulkUpload", Write, Bulk),
        ],
    ),
    (
        "cpis.attendance.v1.AttendanceService",
        &[
            ("RecordAttendance", Write, Interactive),
            ("ListAttendances", Read, Interactive),
        ],
    ),
    (
        "cpis.notification.v1.NotificationService",
        &[
            ("Publish", IdempotentWrite, Interactive),
            ("ListNotifications", Read, Interactive),
            ("AcknowledgeNotifications", IdempotentWrite, Interactive),
            ("Subscribe", Read, Interactive),
            ("RegisterWebhook", Write, Interactive),
            ("ListWebhooks", Read, Interactive),
            ("RotateWebhookSecret", Write, Interactive),
            ("UnregisterWebhook", IdempotentWrite, Interactive),
            ("ListWebhookDeliveries", Read, Interactive),
            ("ListDeliveryAttempts", Read, Interactive),
        ],
    ),
    (
        "cpis.audit.v1.AuditService",
        &[
            ("Append", IdempotentWrite, Interactive),
            ("QueryEvents", Read, Interactive),
            ("GetCheckpoint", Read, Interactive),
            ("GetInclusionProof", Read, Interactive),
            ("GetConsistencyProof", Read, Interactive),
        ],
    ),
];

/// The effect and pace [`RPC_TABLE`] gives `service`/`method`.
pub fn classify(service: &str, method: &str) -> Option<(Effect, Pace)> {
    RPC_TABLE
        .iter()
        .filter(|(s, _)| *s == service)
        .flat_map(|(_, methods)| methods.iter())
        .find(|(m, _, _)| *m == method)
        .map(|(_, effect, pace)| (*effect, *pace))
}

/// One RPC of the contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractRpc {
    /// The workload serving it.
    pub workload: Workload,
    /// `package.Service/Method`.
    pub name: String,
    /// Whether the client sends a stream.
    pub client_streaming: bool,
    /// Whether the server answers with a stream.
    pub server_streaming: bool,
    /// From [`RPC_TABLE`].
    pub effect: Effect,
    /// From [`RPC_TABLE`].
    pub pace: Pace,
}

impl ContractRpc {
    /// The HTTP/2 path gRPC sends it on: `/package.Service/Method`.
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// Whether the edge retries it: idempotent, and unary (a stream cannot be replayed
    /// without buffering it, and a per-try timeout would cut a long one).
    pub fn is_retried(&self) -> bool {
        self.effect.is_idempotent() && !self.client_streaming && !self.server_streaming
    }
}

/// The fully-qualified names of the gRPC services in the contracts' descriptor set.
pub fn contract_services() -> Result<Vec<String>, RenderError> {
    Ok(descriptor()?
        .file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service
                .iter()
                .map(move |s| format!("{package}.{}", s.name()))
        })
        .collect())
}

/// Every RPC of the contracts, classified by [`RPC_TABLE`]: an error names the first RPC
/// the table leaves out, or the first service no workload serves.
pub fn contract_rpcs() -> Result<Vec<ContractRpc>, RenderError> {
    let mut rpcs = Vec::new();
    for file in descriptor()?.file {
        for service in &file.service {
            let service_name = format!("{}.{}", file.package(), service.name());
            let workload = Workload::serving(&service_name)
                .ok_or_else(|| RenderError::UnroutedService(service_name.clone()))?;
            for method in &service.method {
                let name = format!("{service_name}/{}", method.name());
                let (effect, pace) = classify(&service_name, method.name())
                    .ok_or_else(|| RenderError::UnclassifiedRpc(name.clone()))?;
                rpcs.push(ContractRpc {
                    workload,
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                    effect,
                    pace,
                    name,
                });
            }
        }
    }
    Ok(rpcs)
}

fn descriptor() -> Result<FileDescriptorSet, RenderError> {
    Ok(FileDescriptorSet::decode(cpis_proto::FILE_DESCRIPTOR_SET)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contracts_is_classified_and_the_table_names_no_other() {
        let rpcs = contract_rpcs().unwrap();
        let mut listed = 0;
        for (service, methods) in RPC_TABLE {
            for (method, _, _) in *methods {
                listed += 1;
                let name = format!("{service}/{method}");
                assert!(
                    rpcs.iter().any(|r| r.name == name),
                    "RPC_TABLE names {name}, which the contracts no longer have"
                );
            }
        }
        assert_eq!(rpcs.len(), listed, "an RPC is listed twice");
    }

    #[test]
    fn every_service_of_the_contracts_has_a_workload() {
        let services = contract_services().unwrap();
        assert_eq!(services.len(), cpis_proto::SERVICE_NAMES.len());
        for service in services {
            assert!(Workload::serving(&service).is_some(), "{service}");
        }
        for service in cpis_proto::SERVICE_NAMES {
            assert!(Workload::serving(service).is_some(), "{service}");
        }
    }

    #[test]
    fn only_idempotent_unary_rpcs_are_retried() {
        let rpcs = contract_rpcs().unwrap();
        let retried = |name: &str| {
            rpcs.iter()
                .find(|r| r.name.ends_with(&format!("/{name}")))
                .unwrap_or_else(|| panic!("{name}"))
                .is_retried()
        };
        for read in [
            "GetFlags",
            "ListFlags",
            "TracePerson",
            "Authorize",
            "ExportDirectory",
            "GetCheckpoint",
        ] {
            assert!(retried(read), "{read}");
        }
        for write in [
            "RecordAttendance",
            "BulkUpload",
            "IssueToken",
            "CreateUser",
            "UpsertFlag",
            "ImportPersons",
            "Subscribe",
        ] {
            assert!(!retried(write), "{write}");
        }
    }

    #[test]
    fn names_that_say_read_are_classified_as_reads() {
        for (service, methods) in RPC_TABLE {
            for (method, effect, _) in *methods {
                if ["Get", "List", "Trace", "Export", "Query"]
                    .iter()
                    .any(|p| method.starts_with(p))
                {
                    assert_eq!(*effect, Effect::Read, "{service}/{method}");
                }
            }
        }
    }
}
