//! The RPC handlers: validate, authorise, call the log, map errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cpis_merkle::CheckpointSigner;
use cpis_mesh::token::{Activity, Principal, TokenVerifier};
use cpis_mesh::{ApiError, FieldViolation};
use cpis_proto::audit::audit_service_server::AuditService;
use cpis_proto::audit::{
    AppendRequest, AppendResponse, AppendResult, AuditEvent, AuditOutcome, Checkpoint,
    GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetInclusionProofRequest, GetInclusionProofResponse,
    NoteSignature, QueryEventsRequest, QueryEventsResponse, get_inclusion_proof_request,
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::status;
use crate::log;
use crate::log::RequestCheckpoints;
use crate::query;
use crate::store::{AuditStore, Columns, PendingEvent, StoredCheckpoint};

/// The audit service's handlers over a store.
#[derive(Clone)]
pub struct AuditApi<S> {
    pub(crate) store: S,
    pub(crate) signer: Arc<CheckpointSigner>,
    pub(crate) origin: String,
    pub(crate) recorded_by: String,
    pub(crate) tokens: TokenVerifier,
    pub(crate) max_batch: usize,
    /// Wakes the checkpointer after appends.
    pub(crate) appended: Arc<Notify>,
    /// Events appended since the last checkpoint.
    pub(crate) pending: Arc<AtomicU64>,
    pub(crate) nhs_hasher: cpis_mesh::nhs_hash::NhsHasher,
    /// The pace of checkpoints signed because a request found the log grown.
    pub(crate) request_checkpoints: Arc<RequestCheckpoints>,
    /// Asked whether a local authority flags the child its user queries about.
    pub(crate) flags: crate::scope::FlagRegistry,
    /// The national privacy offices, whose users query the whole log.
    pub(crate) national: Arc<[cpis_domain::OdsCode]>,
}

/// Checks one event and normalises its NHS number to 10 digits; problems are reported with
/// paths under `prefix` (e.g. `events[3]`).
pub(crate) fn validate_event(
    event: &mut AuditEvent,
    prefix: &str,
    problems: &mut Vec<FieldViolation>,
) -> Option<Uuid> {
    let mut bad = |field: &str, description: &str| {
        problems.push(FieldViolation::new(
            format!("{prefix}.{field}"),
            description,
        ));
    };
    let id = Uuid::parse_str(&event.event_id).ok();
    if id.is_none() {
        bad("event_id", "must be a UUID");
    }
    if event.event_time.is_none() {
        bad("event_time", "is required");
    }
    let actor_ok = event
        .actor
        .as_ref()
        .and_then(|a| a.kind.as_ref())
        .is_some_and(|kind| match kind {
            cpis_proto::audit::actor::Kind::User(p) => !p.user_id.is_empty(),
            cpis_proto::audit::actor::Kind::Workload(w) => !w.is_empty(),
        });
    if !actor_ok {
        bad("actor", "is required: a user with a user id, or a workload");
    }
    let action_ok = !event.action.is_empty()
        && event.action.len() <= 64
        && event
            .action
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
    if !action_ok {
        bad(
            "action",
            "is required: a dotted lower-case name such as attendance.check",
        );
    }
    if event.outcome == AuditOutcome::Unspecified as i32
        || AuditOutcome::try_from(event.outcome).is_err()
    {
        bad("outcome", "is required");
    }
    if let Some(number) = event.nhs_number.as_mut().filter(|n| !n.value.is_empty()) {
        match number.value.parse::<cpis_domain::NhsNumber>() {
            Ok(valid) => number.value = valid.as_str().to_owned(),
            Err(error) => bad("nhs_number", &error.to_string()),
        }
    }
    id
}

fn signatures(note: &str) -> Vec<NoteSignature> {
    use base64::Engine;
    let Some((_, sigs)) = note.split_once("\n\n") else {
        return Vec::new();
    };
    sigs.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("\u{2014} ")?;
            let (name, b64) = rest.split_once(' ')?;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            (raw.len() > 4).then(|| NoteSignature {
                key_name: name.to_owned(),
                key_id: raw[..4].to_vec(),
                signature: raw[4..].to_vec(),
            })
        })
        .collect()
}

/// The wire form of a stored checkpoint.
pub(crate) fn checkpoint_message(origin: &str, c: &StoredCheckpoint) -> Checkpoint {
    Checkpoint {
        origin: origin.to_owned(),
        tree_size: i64::try_from(c.tree_size).unwrap_or(i64::MAX),
        root_hash: c.root_hash.as_bytes().to_vec(),
        signed_note: c.signed_note.clone(),
        signatures: signatures(&c.signed_note),
        create_time: Some(prost_types::Timestamp {
            seconds: c.create_time_us.div_euclid(1_000_000),
            nanos: i32::try_from(c.create_time_us.rem_euclid(1_000_000) * 1_000)
                .unwrap_or_default(),
        }),
    }
}

fn size_of(field: &str, value: i64) -> Result<Option<u64>, ApiError> {
    match value {
        0 => Ok(None),
        v if v > 0 => Ok(u64::try_from(v).ok()),
        _ => Err(ApiError::invalid(field, "must not be negative")),
    }
}

impl<S: AuditStore> AuditApi<S> {
    /// The principal of a call that carries a user token.
    pub(crate) async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, ApiError> {
        Ok(self.tokens.verify_metadata(request.metadata()).await?)
    }

    /// Appends validated events and wakes the checkpointer.
    pub(crate) async fn append_pending(
        &self,
        pending: Vec<PendingEvent>,
    ) -> Result<Vec<crate::store::Appended>, ApiError> {
        let appended = self.store.append(pending, &self.recorded_by).await?;
        let new = appended.iter().filter(|a| !a.duplicate).count() as u64;
        if new > 0 {
            self.pending.fetch_add(new, Ordering::SeqCst);
            self.appended.notify_one();
        }
        Ok(appended)
    }

    /// The checkpoint at `size`, or (None) the latest, which covers at least `needed` events.
    async fn checkpoint_covering(
        &self,
        size: Option<u64>,
        needed: u64,
    ) -> Result<StoredCheckpoint, ApiError> {
        match size {
            Some(size) => self
                .store
                .checkpoint(Some(size))
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no checkpoint of size {size}; ask for the latest, or a size a checkpoint was made at"))),
            None => self.latest_checkpoint(needed).await,
        }
    }

    /// The latest checkpoint. A request that finds the log grown past it signs a fresh one,
    /// so that a new event is provable at once; but at most one per `request_checkpoints.
    /// min_gap` in this replica, whatever the rate of requests (checkpoints are kept for
    /// ever). Within the gap the latest is answered, or, when it does not cover the `needed`
    /// events (a proof of an event newer than it), the request waits for the gap to end.
    async fn latest_checkpoint(&self, needed: u64) -> Result<StoredCheckpoint, ApiError> {
        loop {
            let size = self.store.size().await?;
            let latest = self.store.checkpoint(None).await?;
            if let Some(latest) = latest.as_ref().filter(|c| c.tree_size >= size) {
                return Ok(latest.clone());
            }
            let wait = self.request_checkpoints.gap_left();
            if wait.is_zero() {
                // One signer at a time: requests that arrive together share one checkpoint.
                let _signing = self.request_checkpoints.signing.lock().await;
                if !self.request_checkpoints.gap_left().is_zero() {
                    continue;
                }
                let signed = log::checkpoint_now(&self.store, &self.signer, &self.origin).await?;
                self.request_checkpoints.signed_now();
                return Ok(signed);
            }
            match latest {
                Some(latest) if latest.tree_size >= needed => return Ok(latest),
                _ => tokio::time::sleep(wait).await,
            }
        }
    }
}

#[tonic::async_trait]
impl<S: AuditStore> AuditService for AuditApi<S> {
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let mut events = request.into_inner().events;
        if events.is_empty() || events.len() > self.max_batch {
            return Err(ApiError::invalid(
                "events",
                format!("send 1 to {} events", self.max_batch),
            )
            .into());
        }
        let mut problems = Vec::new();
        let mut pending = Vec::with_capacity(events.len());
        for (i, event) in events.iter_mut().enumerate() {
            if let Some(id) = validate_event(event, &format!("events[{i}]"), &mut problems) {
                pending.push((id, event.clone()));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let pending = pending
            .into_iter()
            .map(|(event_id, event)| PendingEvent {
                event_id,
                columns: Columns::of(&event),
                event,
            })
            .collect();
        // One span per event in the trace of the request that produced it: the outbox's
        // asynchronous hop stays in the producer's trace.
        let spans: Vec<tracing::Span> = events
            .iter()
            .filter_map(|event| {
                let context = event.trace_context.as_ref()?;
                let span = tracing::info_span!(
                    "audit.record",
                    otel.kind = "consumer",
                    audit.action = %event.action
                );
                cpis_mesh::propagation::continue_trace(
                    &span,
                    &context.traceparent,
                    &context.tracestate,
                );
                Some(span)
            })
            .collect();
        let appended = self.append_pending(pending).await?;
        drop(spans);
        tracing::debug!(events = appended.len(), "appended");
        Ok(Response::new(AppendResponse {
            results: appended
                .into_iter()
                .map(|a| AppendResult {
                    event_id: a.event_id.to_string(),
                    index: i64::try_from(a.index).unwrap_or(i64::MAX),
                    duplicate: a.duplicate,
                })
                .collect(),
        }))
    }

    async fn query_events(
        &self,
        request: Request<QueryEventsRequest>,
    ) -> Result<Response<QueryEventsResponse>, Status> {
        Ok(Response::new(query::query_events(self, request).await?))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let size = size_of("tree_size", request.get_ref().tree_size)?;
        let checkpoint = self.checkpoint_covering(size, 0).await?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(checkpoint_message(&self.origin, &checkpoint)),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let body = request.into_inner();
        let index = match body.leaf {
            Some(get_inclusion_proof_request::Leaf::Index(i)) => {
                u64::try_from(i).map_err(|_| ApiError::invalid("index", "must not be negative"))?
            }
            Some(get_inclusion_proof_request::Leaf::EventId(id)) => {
                let id = Uuid::parse_str(&id)
                    .map_err(|_| ApiError::invalid("event_id", "must be a UUID"))?;
                self.store
                    .find_index(id)
                    .await
                    .map_err(status)?
                    .ok_or_else(|| ApiError::NotFound("no event with this id".to_owned()))?
            }
            None => return Err(ApiError::invalid("leaf", "give an index or an event id").into()),
        };
        let checkpoint = self
            .checkpoint_covering(
                size_of("tree_size", body.tree_size)?,
                index.saturating_add(1),
            )
            .await?;
        if index >= checkpoint.tree_size {
            return Err(ApiError::invalid(
                "index",
                format!("is not in the tree of size {}", checkpoint.tree_size),
            )
            .into());
        }
        let proof = log::inclusion_proof(&self.store, checkpoint.tree_size, index)
            .await
            .map_err(status)?;
        let leaf = log::leaf_hash(&self.store, index).await.map_err(status)?;
        Ok(Response::new(GetInclusionProofResponse {
            index: i64::try_from(index).unwrap_or(i64::MAX),
            tree_size: i64::try_from(checkpoint.tree_size).unwrap_or(i64::MAX),
            leaf_hash: leaf.as_bytes().to_vec(),
            hashes: proof.iter().map(|h| h.as_bytes().to_vec()).collect(),
            checkpoint: Some(checkpoint_message(&self.origin, &checkpoint)),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let body = request.into_inner();
        let first = size_of("first_tree_size", body.first_tree_size)?
            .ok_or_else(|| ApiError::invalid("first_tree_size", "must be at least 1"))?;
        let checkpoint = self
            .checkpoint_covering(size_of("second_tree_size", body.second_tree_size)?, first)
            .await?;
        let second = checkpoint.tree_size;
        if first > second {
            return Err(ApiError::invalid(
                "first_tree_size",
                format!("must not exceed the second tree size {second}"),
            )
            .into());
        }
        let proof = log::consistency_proof(&self.store, second, first)
            .await
            .map_err(status)?;
        Ok(Response::new(GetConsistencyProofResponse {
            first_tree_size: i64::try_from(first).unwrap_or(i64::MAX),
            second_tree_size: i64::try_from(second).unwrap_or(i64::MAX),
            hashes: proof.iter().map(|h| h.as_bytes().to_vec()).collect(),
            checkpoint: Some(checkpoint_message(&self.origin, &checkpoint)),
        }))
    }
}

/// The activity a query needs.
pub(crate) const QUERY_ACTIVITY: Activity = Activity::AuditRead;
