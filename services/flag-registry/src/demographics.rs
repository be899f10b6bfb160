//! Tracing NHS numbers against identity's person register (`TracePeople`), as real uploads
//! are traced against the national demographics service.

use std::collections::HashMap;
use std::fmt;

use cpis_domain::{NhsNumber, RecordOutcome};
use cpis_mesh::client::MeshChannel;
use cpis_proto::common;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use cpis_proto::identity::{PersonTrace, PersonTraceQuery, TraceOutcome, TracePeopleRequest};

/// The most queries identity answers in one `TracePeople`.
pub const MAX_BATCH: usize = 1000;

/// The person register could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the person register is unavailable: {0}")]
pub struct DemographicsUnavailable(pub String);

/// Something that traces NHS numbers.
#[tonic::async_trait]
pub trait Demographics: Send + Sync + fmt::Debug + 'static {
    /// One trace per query, in order (at most [`MAX_BATCH`] queries).
    async fn trace(
        &self,
        queries: Vec<PersonTraceQuery>,
    ) -> Result<Vec<PersonTrace>, DemographicsUnavailable>;
}

/// Identity's register over the mesh.
#[derive(Debug, Clone)]
pub struct IdentityRegister {
    client: IdentityServiceClient<MeshChannel>,
}

impl IdentityRegister {
    /// A register reached through `channel` (to the identity service).
    pub fn new(channel: MeshChannel) -> Self {
        Self {
            client: IdentityServiceClient::new(channel),
        }
    }
}

#[tonic::async_trait]
impl Demographics for IdentityRegister {
    async fn trace(
        &self,
        queries: Vec<PersonTraceQuery>,
    ) -> Result<Vec<PersonTrace>, DemographicsUnavailable> {
        let expected = queries.len();
        let traces = self
            .client
            .clone()
            .trace_people(TracePeopleRequest { queries })
            .await
            .map_err(|status| DemographicsUnavailable(status.message().to_owned()))?
            .into_inner()
            .traces;
        if traces.len() != expected {
            return Err(DemographicsUnavailable(format!(
                "{} traces for {expected} queries",
                traces.len()
            )));
        }
        Ok(traces)
    }
}

/// A fixed register in memory: for tests and `cpis dev` without identity.
#[derive(Debug, Clone, Default)]
pub struct FixedRegister {
    people: HashMap<String, PersonTrace>,
    /// When set, every trace fails (demographics unavailable).
    pub unavailable: bool,
}

impl FixedRegister {
    /// Adds a person whose trace answers `outcome` (with `superseded_by` for superseded).
    pub fn with(
        mut self,
        number: &str,
        outcome: TraceOutcome,
        superseded_by: Option<&str>,
    ) -> Self {
        self.people.insert(
            number.to_owned(),
            PersonTrace {
                nhs_number: Some(common::NhsNumber {
                    value: number.to_owned(),
                }),
                outcome: outcome as i32,
                superseded_by: superseded_by.map(|n| common::NhsNumber {
                    value: n.to_owned(),
                }),
            },
        );
        self
    }
}

#[tonic::async_trait]
impl Demographics for FixedRegister {
    async fn trace(
        &self,
        queries: Vec<PersonTraceQuery>,
    ) -> Result<Vec<PersonTrace>, DemographicsUnavailable> {
        if self.unavailable {
            return Err(DemographicsUnavailable("the register is down".to_owned()));
        }
        Ok(queries
            .into_iter()
            .map(|q| {
                let number = q.nhs_number.map(|n| n.value).unwrap_or_default();
                self.people.get(&number).cloned().unwrap_or(PersonTrace {
                    nhs_number: Some(common::NhsNumber { value: number }),
                    outcome: TraceOutcome::NoMatch as i32,
                    superseded_by: None,
                })
            })
            .collect())
    }
}

/// The record outcome of a trace of a valid number.
pub fn outcome(trace: &PersonTrace) -> RecordOutcome {
    let superseded_by = trace
        .superseded_by
        .as_ref()
        .and_then(|n| NhsNumber::parse(&n.value).ok());
    match TraceOutcome::try_from(trace.outcome) {
        Ok(TraceOutcome::Matched) => RecordOutcome::Stored,
        Ok(TraceOutcome::Sensitive) => RecordOutcome::SensitiveRefused,
        Ok(TraceOutcome::Superseded) => match superseded_by {
            Some(stored_under) => RecordOutcome::Superseded { stored_under },
            None => RecordOutcome::NotVerified,
        },
        Ok(TraceOutcome::Inactive) => RecordOutcome::Inactive,
        Ok(TraceOutcome::NotVerified) => RecordOutcome::NotVerified,
        Ok(TraceOutcome::Invalid) => RecordOutcome::Invalid {
            field: "nhs_number".to_owned(),
            reason: "is not a valid NHS number".to_owned(),
        },
        Ok(TraceOutcome::NoMatch | TraceOutcome::Unspecified) | Err(_) => RecordOutcome::NoMatch,
    }
}

/// A record outcome on the wire.
pub fn wire_outcome(outcome: &RecordOutcome) -> cpis_proto::flags::RecordOutcome {
    use cpis_proto::flags::RecordOutcome as Wire;
    match outcome {
        RecordOutcome::Stored => Wire::Stored,
        RecordOutcome::NoMatch => Wire::NoMatch,
        RecordOutcome::SensitiveRefused => Wire::SensitiveRefused,
        RecordOutcome::NotVerified => Wire::NotVerified,
        RecordOutcome::Superseded { .. } => Wire::Superseded,
        RecordOutcome::Inactive => Wire::Inactive,
        RecordOutcome::Invalid { .. } => Wire::Invalid,
    }
}
