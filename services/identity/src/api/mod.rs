//! The `cpis.identity.v1.IdentityService` handlers: validate, authorise, call the store and
//! the domain, map errors (through [`IdentityError`], in one place).
//!
//! Which peers may call which RPC is the access policy in `lib.rs`; what a user must be
//! allowed to do is checked here, from the token in the `authorization` metadata.

mod authorize;
mod convert;
mod directory;
mod persons;
mod sign_in;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::authz::Caller;
use cpis_mesh::nhs_hash::NhsHasher;
use cpis_mesh::token::{StaticKeys, TokenRules, TokenVerifier};
use cpis_proto::identity::identity_service_server::IdentityService;
use cpis_proto::identity::*;
use time::OffsetDateTime;
use tonic::{Request, Response, Status, Streaming};

use crate::credential::CredentialHasher;
use crate::error::IdentityError;
use crate::keys::KeyRing;
use crate::limiter::SignInLimiter;
use crate::store::IdentityStore;

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct IdentityState {
    /// The directory, keys and register.
    pub store: Arc<dyn IdentityStore>,
    /// The signing keys.
    pub keys: KeyRing,
    /// Credential hashing.
    pub hasher: CredentialHasher,
    /// Failed sign-in limits.
    pub limiter: SignInLimiter,
    /// What tokens say and how they are checked.
    pub rules: TokenRules,
    /// How long a token is valid.
    pub token_lifetime: Duration,
    /// How long a verifier may cache the published keys.
    pub key_cache_age: Duration,
    /// The shortest credential accepted for a new user.
    pub min_credential_length: u32,
    /// Pseudonyms of NHS numbers for logs.
    pub nhs_hasher: NhsHasher,
}

impl IdentityState {
    /// A verifier of this service's own tokens, over the keys published now (no cache, so
    /// a key made a moment ago by a rotation is known at once).
    pub fn verifier(&self) -> TokenVerifier {
        let keys = self
            .keys
            .published(OffsetDateTime::now_utc())
            .iter()
            .map(|k| k.verification_key())
            .collect();
        TokenVerifier::new(Arc::new(StaticKeys(keys)), self.rules.clone())
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct IdentityApi {
    state: Arc<IdentityState>,
}

impl IdentityApi {
    /// Handlers over `state`.
    pub fn new(state: Arc<IdentityState>) -> Self {
        Self { state }
    }
}

/// The caller the runtime resolved (the access policy has admitted it).
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, IdentityError> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| IdentityError::Denied("the caller is unknown".to_owned()))
}

fn answer<T>(result: Result<T, IdentityError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        answer(sign_in::issue_token(&self.state, request).await)
    }

    async fn get_signing_keys(
        &self,
        _request: Request<GetSigningKeysRequest>,
    ) -> Result<Response<GetSigningKeysResponse>, Status> {
        answer(Ok(sign_in::signing_keys(&self.state)))
    }

    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<Response<AuthorizeResponse>, Status> {
        answer(authorize::authorize(&self.state, request).await)
    }

    async fn get_organisation(
        &self,
        request: Request<GetOrganisationRequest>,
    ) -> Result<Response<GetOrganisationResponse>, Status> {
        answer(directory::get_organisation(&self.state, request).await)
    }

    async fn list_organisations(
        &self,
        request: Request<ListOrganisationsRequest>,
    ) -> Result<Response<ListOrganisationsResponse>, Status> {
        answer(directory::list_organisations(&self.state, request).await)
    }

    async fn trace_person(
        &self,
        request: Request<TracePersonRequest>,
    ) -> Result<Response<TracePersonResponse>, Status> {
        answer(persons::trace_person(&self.state, request).await)
    }

    async fn trace_people(
        &self,
        request: Request<TracePeopleRequest>,
    ) -> Result<Response<TracePeopleResponse>, Status> {
        answer(persons::trace_people(&self.state, request).await)
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        answer(directory::create_user(&self.state, request).await)
    }

    async fn disable_user(
        &self,
        request: Request<DisableUserRequest>,
    ) -> Result<Response<DisableUserResponse>, Status> {
        answer(directory::disable_user(&self.state, request).await)
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        answer(directory::list_users(&self.state, request).await)
    }

    async fn create_role_profile(
        &self,
        request: Request<CreateRoleProfileRequest>,
    ) -> Result<Response<CreateRoleProfileResponse>, Status> {
        answer(directory::create_role_profile(&self.state, request).await)
    }

    async fn disable_role_profile(
        &self,
        request: Request<DisableRoleProfileRequest>,
    ) -> Result<Response<DisableRoleProfileResponse>, Status> {
        answer(directory::disable_role_profile(&self.state, request).await)
    }

    async fn import_directory(
        &self,
        request: Request<ImportDirectoryRequest>,
    ) -> Result<Response<ImportDirectoryResponse>, Status> {
        answer(directory::import_directory(&self.state, request).await)
    }

    async fn export_directory(
        &self,
        request: Request<ExportDirectoryRequest>,
    ) -> Result<Response<ExportDirectoryResponse>, Status> {
        answer(directory::export_directory(&self.state, request).await)
    }

    async fn import_persons(
        &self,
        request: Request<Streaming<ImportPersonsRequest>>,
    ) -> Result<Response<ImportPersonsResponse>, Status> {
        answer(persons::import_persons(&self.state, request).await)
    }
}
