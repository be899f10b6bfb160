//! The directory RPCs: organisations (read by services and signed-in users), and the
//! administration of users, role profiles and the whole directory (activity
//! `directory.admin`).

use std::collections::HashMap;

use cpis_domain::{FieldViolation, OdsCode};
use cpis_mesh::authz::Caller;
use cpis_mesh::token::Activity;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::identity as pb;
use time::OffsetDateTime;
use tonic::Request;

use super::IdentityState;
use super::authorize::{require, require_token};
use super::convert::{
    after_key, kind_filter, ods_field, page_size, page_token, proto_organisation, proto_profile,
    proto_user, required_ods,
};
use crate::audit;
use crate::credential::check_policy;
use crate::directory::import::{export_directory as export_yaml, import_directory as import_yaml};
use crate::directory::{
    RoleProfile, Status, User, normalise_username, validate_display_name, validate_role_name,
    validate_user_id,
};
use crate::error::IdentityError;
use crate::store::{Page, StoreError};

/// `GetOrganisation`: mesh services without a token, other callers with any valid one.
pub(crate) async fn get_organisation(
    state: &IdentityState,
    request: Request<pb::GetOrganisationRequest>,
) -> Result<pb::GetOrganisationResponse, IdentityError> {
    if !matches!(super::caller(&request)?, Caller::Service(_)) {
        require_token(state, &request).await?;
    }
    let code = required_ods("code", request.get_ref().code.as_ref())?;
    let org = state
        .store
        .organisation(&code)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("no organisation {code}")))?;
    Ok(pb::GetOrganisationResponse {
        organisation: Some(proto_organisation(&org)),
    })
}

/// `ListOrganisations`: mesh services without a token, other callers as administrators.
pub(crate) async fn list_organisations(
    state: &IdentityState,
    request: Request<pb::ListOrganisationsRequest>,
) -> Result<pb::ListOrganisationsResponse, IdentityError> {
    if !matches!(super::caller(&request)?, Caller::Service(_)) {
        require(state, &request, Activity::DirectoryAdmin).await?;
    }
    let body = request.into_inner();
    let kind = kind_filter(body.kind)?;
    let limit = page_size(body.page_size)?;
    let filter = format!("kind={}", body.kind);
    let after = after_key(&body.page_token, &filter)?;
    let page = Page {
        after: after.as_deref(),
        limit: limit + 1,
    };
    let mut orgs = state.store.organisations(kind, page).await?;
    let next_page_token = next_token(&mut orgs, limit, &filter, |o| o.code.to_string());
    Ok(pb::ListOrganisationsResponse {
        organisations: orgs.iter().map(proto_organisation).collect(),
        next_page_token,
    })
}

/// Cuts a page fetched with one item too many, and gives the token of the next page.
fn next_token<T>(
    items: &mut Vec<T>,
    limit: u32,
    filter: &str,
    key: impl Fn(&T) -> String,
) -> String {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|last| page_token(filter, &key(last)))
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// `CreateUser`.
pub(crate) async fn create_user(
    state: &IdentityState,
    request: Request<pb::CreateUserRequest>,
) -> Result<pb::CreateUserResponse, IdentityError> {
    let actor = require(state, &request, Activity::DirectoryAdmin).await?;
    let body = request.into_inner();
    let given = body.user.unwrap_or_default();
    let mut violations = Vec::new();
    let mut check = |field: &str, result: Result<String, String>| {
        result
            .map_err(|e| violations.push(FieldViolation::new(field, e)))
            .ok()
    };
    let user_id = match given.user_id.trim() {
        "" => Some(uuid::Uuid::new_v4().to_string()),
        id => check("user.user_id", validate_user_id(id)),
    };
    let username = check("user.username", normalise_username(&given.username));
    let display_name = check(
        "user.display_name",
        validate_display_name(&given.display_name),
    );
    let policy =
        check_policy(&body.credential, state.min_credential_length).map(|()| String::new());
    check("credential", policy);
    let (Some(user_id), Some(username), Some(display_name), true) =
        (user_id, username, display_name, violations.is_empty())
    else {
        return Err(IdentityError::Invalid(violations));
    };
    let hasher = state.hasher.clone();
    let credential = body.credential;
    let credential_hash = tokio::task::spawn_blocking(move || hasher.hash(&credential))
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))??;
    let user = User {
        user_id,
        username,
        display_name,
        status: Status::Active,
        credential_hash,
        create_time: OffsetDateTime::now_utc(),
    };
    let event = actor
        .event(audit::CREATE_USER, AuditOutcome::Success)
        .target(format!("user:{}", user.user_id))
        .build();
    match state.store.create_user(&user, &[event]).await {
        Err(StoreError::Conflict(_)) => Err(IdentityError::AlreadyExists(
            "the username or user id is taken".to_owned(),
        )),
        other => other.map_err(IdentityError::from),
    }?;
    Ok(pb::CreateUserResponse {
        user: Some(proto_user(&user, Vec::new())),
    })
}

/// `DisableUser`: idempotent.
pub(crate) async fn disable_user(
    state: &IdentityState,
    request: Request<pb::DisableUserRequest>,
) -> Result<pb::DisableUserResponse, IdentityError> {
    let actor = require(state, &request, Activity::DirectoryAdmin).await?;
    let body = request.into_inner();
    let user_id =
        validate_user_id(&body.user_id).map_err(|e| IdentityError::invalid("user_id", e))?;
    let event = actor
        .event(audit::DISABLE_USER, AuditOutcome::Success)
        .target(format!("user:{user_id}"))
        .reason(body.reason)
        .build();
    let user = state
        .store
        .set_user_status(&user_id, Status::Disabled, &[event])
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("no user {user_id}")))?;
    let profiles = state.store.role_profiles_of(&[user_id]).await?;
    Ok(pb::DisableUserResponse {
        user: Some(proto_user(&user, profile_views(state, &profiles).await?)),
    })
}

/// `ListUsers`.
pub(crate) async fn list_users(
    state: &IdentityState,
    request: Request<pb::ListUsersRequest>,
) -> Result<pb::ListUsersResponse, IdentityError> {
    require(state, &request, Activity::DirectoryAdmin).await?;
    let body = request.into_inner();
    let organisation = body
        .organisation
        .as_ref()
        .map(|o| ods_field("organisation", o))
        .transpose()?;
    let limit = page_size(body.page_size)?;
    let filter = format!(
        "organisation={}",
        organisation
            .as_ref()
            .map(OdsCode::as_str)
            .unwrap_or_default()
    );
    let after = after_key(&body.page_token, &filter)?;
    let page = Page {
        after: after.as_deref(),
        limit: limit + 1,
    };
    let mut users = state.store.users(organisation.as_ref(), page).await?;
    let next_page_token = next_token(&mut users, limit, &filter, |u| u.username.clone());
    let ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
    let profiles = state.store.role_profiles_of(&ids).await?;
    let views = profile_views(state, &profiles).await?;
    Ok(pb::ListUsersResponse {
        users: users
            .iter()
            .map(|u| {
                let own = views
                    .iter()
                    .filter(|v| v.user_id == u.user_id)
                    .cloned()
                    .collect();
                proto_user(u, own)
            })
            .collect(),
        next_page_token,
    })
}

/// `CreateRoleProfile`.
pub(crate) async fn create_role_profile(
    state: &IdentityState,
    request: Request<pb::CreateRoleProfileRequest>,
) -> Result<pb::CreateRoleProfileResponse, IdentityError> {
    let actor = require(state, &request, Activity::DirectoryAdmin).await?;
    let given = request.into_inner().role_profile.unwrap_or_default();
    let mut violations = Vec::new();
    let user_id = validate_user_id(&given.user_id)
        .map_err(|e| violations.push(FieldViolation::new("role_profile.user_id", e)))
        .ok();
    let organisation = required_ods("role_profile.organisation", given.organisation.as_ref())
        .map_err(|e| {
            if let IdentityError::Invalid(v) = e {
                violations.extend(v);
            }
        })
        .ok();
    let role = validate_role_name(&given.role)
        .map_err(|e| violations.push(FieldViolation::new("role_profile.role", e)))
        .ok();
    let (Some(user_id), Some(organisation), Some(role)) = (user_id, organisation, role) else {
        return Err(IdentityError::Invalid(violations));
    };
    if state.store.role(&role).await?.is_none() {
        return Err(IdentityError::invalid(
            "role_profile.role",
            "is not a role the directory defines",
        ));
    }
    if state.store.user(&user_id).await?.is_none() {
        return Err(IdentityError::NotFound(format!("no user {user_id}")));
    }
    if state.store.organisation(&organisation).await?.is_none() {
        return Err(IdentityError::NotFound(format!(
            "no organisation {organisation}"
        )));
    }
    let profile = RoleProfile {
        role_profile_id: uuid::Uuid::new_v4().to_string(),
        user_id,
        organisation,
        role,
        status: Status::Active,
        create_time: OffsetDateTime::now_utc(),
    };
    let event = actor
        .event(audit::CREATE_ROLE_PROFILE, AuditOutcome::Success)
        .target(format!("role_profile:{}", profile.role_profile_id))
        .reason(format!(
            "{} at {} for user {}",
            profile.role, profile.organisation, profile.user_id
        ))
        .build();
    match state.store.create_role_profile(&profile, &[event]).await {
        Err(StoreError::Conflict(_)) => Err(IdentityError::AlreadyExists(
            "the user already has an active role profile with this role at this organisation"
                .to_owned(),
        )),
        // Removed between the checks above and the write.
        Err(StoreError::MissingReference(what)) => Err(IdentityError::NotFound(what)),
        other => other.map_err(IdentityError::from),
    }?;
    let view = profile_views(state, std::slice::from_ref(&profile)).await?;
    Ok(pb::CreateRoleProfileResponse {
        role_profile: view.into_iter().next(),
    })
}

/// `DisableRoleProfile`: idempotent.
pub(crate) async fn disable_role_profile(
    state: &IdentityState,
    request: Request<pb::DisableRoleProfileRequest>,
) -> Result<pb::DisableRoleProfileResponse, IdentityError> {
    let actor = require(state, &request, Activity::DirectoryAdmin).await?;
    let body = request.into_inner();
    let id = validate_user_id(&body.role_profile_id)
        .map_err(|e| IdentityError::invalid("role_profile_id", e))?;
    let event = actor
        .event(audit::DISABLE_ROLE_PROFILE, AuditOutcome::Success)
        .target(format!("role_profile:{id}"))
        .reason(body.reason)
        .build();
    let profile = state
        .store
        .set_role_profile_status(&id, Status::Disabled, &[event])
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("no role profile {id}")))?;
    let view = profile_views(state, std::slice::from_ref(&profile)).await?;
    Ok(pb::DisableRoleProfileResponse {
        role_profile: view.into_iter().next(),
    })
}

/// `ImportDirectory`.
pub(crate) async fn import_directory(
    state: &IdentityState,
    request: Request<pb::ImportDirectoryRequest>,
) -> Result<pb::ImportDirectoryResponse, IdentityError> {
    let actor = require(state, &request, Activity::DirectoryAdmin).await?;
    let body = request.into_inner();
    let counts = import_yaml(
        state.store.as_ref(),
        &state.hasher,
        state.min_credential_length,
        &body.directory_yaml,
        body.validate_only,
        &actor,
    )
    .await?;
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(pb::ImportDirectoryResponse {
        created_count: count(counts.created),
        updated_count: count(counts.updated),
        unchanged_count: count(counts.unchanged),
    })
}

/// `ExportDirectory`.
pub(crate) async fn export_directory(
    state: &IdentityState,
    request: Request<pb::ExportDirectoryRequest>,
) -> Result<pb::ExportDirectoryResponse, IdentityError> {
    require(state, &request, Activity::DirectoryAdmin).await?;
    Ok(pb::ExportDirectoryResponse {
        directory_yaml: export_yaml(state.store.as_ref()).await?,
    })
}

/// Role profiles on the wire, each with what its role grants at its organisation now.
async fn profile_views(
    state: &IdentityState,
    profiles: &[RoleProfile],
) -> Result<Vec<pb::RoleProfile>, IdentityError> {
    if profiles.is_empty() {
        return Ok(Vec::new());
    }
    let roles = state.store.roles().await?;
    let mut kinds = HashMap::new();
    for profile in profiles {
        if !kinds.contains_key(&profile.organisation) {
            let kind = state
                .store
                .organisation(&profile.organisation)
                .await?
                .map(|o| o.kind);
            kinds.insert(profile.organisation.clone(), kind);
        }
    }
    Ok(profiles
        .iter()
        .map(|p| {
            let role = roles.iter().find(|r| r.name == p.role);
            let kind = kinds.get(&p.organisation).copied().flatten();
            let activities: Vec<Activity> = match (role, kind) {
                (Some(role), Some(kind)) => role.activities_at(kind).into_iter().collect(),
                _ => Vec::new(),
            };
            proto_profile(p, &activities)
        })
        .collect())
}
