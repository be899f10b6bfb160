//! The `cpis.flags.v1.FlagRegistryService` handlers: validate, authorise, call the store
//! and the domain, map errors (through `ApiError`, in one place: `error.rs`).
//!
//! Which peers may call which RPC is the access policy in `lib.rs`; what a user must be
//! allowed to do is checked here, from the token in the `authorization` metadata, before
//! anything is looked up.

mod read;
mod upload;
mod write;

use std::sync::Arc;

use cpis_domain::{OdsCode, VisibilityWindows};
use cpis_mesh::ApiError;
use cpis_mesh::authz::Caller;
use cpis_mesh::nhs_hash::NhsHasher;
use cpis_mesh::token::{Activity, Principal, TokenVerifier};
use cpis_proto::audit::AuditOutcome;
use cpis_proto::flags::flag_registry_service_server::FlagRegistryService;
use cpis_proto::flags::*;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::AuditActor;
use crate::cache::FlagCache;
use crate::clock::Clock;
use crate::demographics::Demographics;
use crate::store::FlagStore;

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct FlagRegistryState {
    /// The flags.
    pub store: Arc<dyn FlagStore>,
    /// Verifies users' session tokens.
    pub tokens: TokenVerifier,
    /// Traces NHS numbers.
    pub demographics: Arc<dyn Demographics>,
    /// The `GetFlags` cache.
    pub cache: FlagCache,
    /// Today's date in England.
    pub clock: Clock,
    /// The visibility rule's windows.
    pub windows: VisibilityWindows,
    /// Pseudonyms of NHS numbers (cache keys, logs).
    pub nhs_hasher: NhsHasher,
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct FlagRegistryApi {
    state: Arc<FlagRegistryState>,
}

impl FlagRegistryApi {
    /// Handlers over `state`.
    pub fn new(state: Arc<FlagRegistryState>) -> Self {
        Self { state }
    }
}

/// The caller the runtime resolved (the access policy has admitted it).
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, ApiError> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::PermissionDenied("the caller is unknown".to_owned()))
}

/// A user acting for an authority on its flags: signed in, granted `flag.manage`, for
/// that very authority. A refusal is audited.
pub(crate) async fn authority_user<T>(
    state: &FlagRegistryState,
    request: &Request<T>,
    authority: Option<&cpis_proto::common::OdsCode>,
    action: &str,
) -> Result<(Principal, OdsCode, AuditActor), ApiError> {
    let actor = AuditActor::from_caller(&caller(request)?);
    let user = state.tokens.verify_metadata(request.metadata()).await?;
    let actor = actor.with_user(&user);
    let authority = OdsCode::parse(authority.map(|c| c.value.as_str()).unwrap_or_default())
        .map_err(|e| ApiError::invalid("authority.code", e.to_string()))?;
    let allowed = user
        .require(Activity::FlagManage)
        .and_then(|()| user.require_organisation(&authority));
    if let Err(denied) = allowed {
        let event = actor.event(
            action,
            AuditOutcome::Denied,
            None,
            format!("authority:{}", authority.as_str()),
            denied.to_string(),
        );
        state.store.record(vec![event]).await?;
        return Err(denied);
    }
    Ok((user, authority, actor))
}

fn answer<T>(result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl FlagRegistryService for FlagRegistryApi {
    async fn upsert_flag(
        &self,
        request: Request<UpsertFlagRequest>,
    ) -> Result<Response<UpsertFlagResponse>, Status> {
        answer(write::upsert_flag(&self.state, request).await)
    }

    async fn end_flag(
        &self,
        request: Request<EndFlagRequest>,
    ) -> Result<Response<EndFlagResponse>, Status> {
        answer(write::end_flag(&self.state, request).await)
    }

    async fn get_flags(
        &self,
        request: Request<GetFlagsRequest>,
    ) -> Result<Response<GetFlagsResponse>, Status> {
        answer(read::get_flags(&self.state, request).await)
    }

    async fn list_flags(
        &self,
        request: Request<ListFlagsRequest>,
    ) -> Result<Response<ListFlagsResponse>, Status> {
        answer(read::list_flags(&self.state, request).await)
    }

    async fn get_upload_report(
        &self,
        request: Request<GetUploadReportRequest>,
    ) -> Result<Response<GetUploadReportResponse>, Status> {
        answer(upload::get_upload_report(&self.state, request).await)
    }

    async fn bulk_upload(
        &self,
        request: Request<Streaming<BulkUploadRequest>>,
    ) -> Result<Response<BulkUploadResponse>, Status> {
        answer(upload::bulk_upload(&self.state, request).await)
    }
}
