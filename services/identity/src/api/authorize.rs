//! Decisions about a user's token: the `Authorize` RPC, and the checks of identity's own
//! RPCs that need a user (directory administration). Unlike local verification elsewhere in
//! the mesh, these see users and role profiles disabled after the token was issued.

use cpis_domain::OdsCode;
use cpis_mesh::token::{Activity, Principal, TokenError};
use cpis_proto::common;
use cpis_proto::identity::{AuthorizeRequest, AuthorizeResponse, DenialReason};
use tonic::Request;
use tonic::metadata::MetadataMap;

use super::IdentityState;
use super::convert::{from_proto_activity, ods_field, proto_activity, proto_principal};
use crate::audit::{AuditActor, timestamp};
use crate::directory::{OrganisationKind, Status};
use crate::error::IdentityError;

/// A decision about a token, an activity and an organisation.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    /// Why it is denied; `None` when allowed.
    pub(crate) denial: Option<(DenialReason, String)>,
    /// Who the token speaks for, when it verified.
    pub(crate) principal: Option<common::Principal>,
    /// What the role profile grants now.
    pub(crate) activities: Vec<Activity>,
    /// The token's expiry (seconds since the epoch), when it verified.
    pub(crate) expires_at: Option<i64>,
}

impl Verdict {
    fn deny(reason: DenialReason, message: impl Into<String>) -> Self {
        Self {
            denial: Some((reason, message.into())),
            principal: None,
            activities: Vec::new(),
            expires_at: None,
        }
    }
}

/// Decides whether the token in `metadata` may perform `activity` (any, when `None`) for
/// `organisation` (any, when `None`).
pub(crate) async fn decide(
    state: &IdentityState,
    metadata: &MetadataMap,
    activity: Option<Activity>,
    organisation: Option<&OdsCode>,
) -> Result<Verdict, IdentityError> {
    let claims = match state.verifier().verify_metadata(metadata).await {
        Ok(principal) => principal,
        Err(TokenError::Missing) => {
            return Ok(Verdict::deny(
                DenialReason::TokenMissing,
                "no session token was sent",
            ));
        }
        Err(TokenError::Expired) => {
            return Ok(Verdict::deny(
                DenialReason::TokenExpired,
                "the session token has expired",
            ));
        }
        Err(other) => return Ok(Verdict::deny(DenialReason::TokenInvalid, other.to_string())),
    };
    let user = state.store.user(&claims.user_id).await?;
    let display_name = user
        .as_ref()
        .map(|u| u.display_name.clone())
        .unwrap_or_default();
    let mut verdict = Verdict {
        denial: None,
        principal: Some(proto_principal(&claims, &display_name)),
        activities: Vec::new(),
        expires_at: Some(claims.expires_at),
    };
    if user.is_none_or(|u| u.status != Status::Active) {
        verdict.denial = Some((
            DenialReason::UserDisabled,
            "the user is disabled".to_owned(),
        ));
        return Ok(verdict);
    }
    let profile = state.store.role_profile(&claims.role_profile).await?;
    let Some(profile) =
        profile.filter(|p| p.status == Status::Active && p.user_id == claims.user_id)
    else {
        verdict.denial = Some((
            DenialReason::RoleProfileDisabled,
            "the role profile is disabled".to_owned(),
        ));
        return Ok(verdict);
    };
    verdict.activities = current_activities(state, &profile.role, &profile.organisation).await?;
    if let Some(activity) = activity.filter(|a| !verdict.activities.contains(a)) {
        verdict.denial = Some((
            DenialReason::ActivityNotGranted,
            format!("the role profile does not grant {}", activity.code()),
        ));
    } else if organisation.is_some_and(|o| o != &profile.organisation) {
        verdict.denial = Some((
            DenialReason::OrganisationMismatch,
            "the role profile belongs to another organisation".to_owned(),
        ));
    }
    Ok(verdict)
}

/// What `role` grants at `organisation` today (nothing when either is gone).
pub(crate) async fn current_activities(
    state: &IdentityState,
    role: &str,
    organisation: &OdsCode,
) -> Result<Vec<Activity>, IdentityError> {
    Ok(current_grant(state, role, organisation).await?.0)
}

/// What `role` grants at `organisation` today, and the organisation's kind (none when the
/// role or the organisation is gone, and then nothing is granted).
pub(crate) async fn current_grant(
    state: &IdentityState,
    role: &str,
    organisation: &OdsCode,
) -> Result<(Vec<Activity>, Option<OrganisationKind>), IdentityError> {
    let (Some(role), Some(org)) = (
        state.store.role(role).await?,
        state.store.organisation(organisation).await?,
    ) else {
        return Ok((Vec::new(), None));
    };
    Ok((
        role.activities_at(org.kind).into_iter().collect(),
        Some(org.kind),
    ))
}

/// `Authorize`: the decision, with the reason for a denial.
pub(crate) async fn authorize(
    state: &IdentityState,
    request: Request<AuthorizeRequest>,
) -> Result<AuthorizeResponse, IdentityError> {
    let body = request.get_ref();
    let activity = from_proto_activity(body.activity)
        .ok_or_else(|| IdentityError::invalid("activity", "must name an activity"))?;
    let organisation = body
        .organisation
        .as_ref()
        .map(|o| ods_field("organisation", o))
        .transpose()?;
    let verdict = decide(
        state,
        request.metadata(),
        Some(activity),
        organisation.as_ref(),
    )
    .await?;
    let (reason, message) = verdict
        .denial
        .unwrap_or((DenialReason::Unspecified, String::new()));
    Ok(AuthorizeResponse {
        allowed: reason == DenialReason::Unspecified,
        denial_reason: reason as i32,
        message,
        principal: verdict.principal,
        activities: verdict
            .activities
            .into_iter()
            .map(|a| proto_activity(a) as i32)
            .collect(),
        expire_time: verdict
            .expires_at
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .map(timestamp),
    })
}

/// The user of a call that needs `activity`: UNAUTHENTICATED without a valid token,
/// PERMISSION_DENIED when the user, the role profile or the activity is not allowed now.
/// Returns the caller as an audit actor acting for that user.
pub(crate) async fn require<T>(
    state: &IdentityState,
    request: &Request<T>,
    activity: Activity,
) -> Result<AuditActor, IdentityError> {
    let caller = super::caller(request)?;
    // A missing, expired or forged token is UNAUTHENTICATED, with the precise reason.
    require_token(state, request).await?;
    let verdict = decide(state, request.metadata(), Some(activity), None).await?;
    match (verdict.denial, verdict.principal) {
        (None, Some(principal)) => Ok(AuditActor::from_caller(&caller).with_user(principal)),
        (Some((_, message)), _) => Err(IdentityError::Denied(message)),
        (None, None) => Err(TokenError::Malformed.into()),
    }
}

/// Any valid session token (verified locally): for RPCs open to every signed-in user.
pub(crate) async fn require_token<T>(
    state: &IdentityState,
    request: &Request<T>,
) -> Result<Principal, IdentityError> {
    Ok(state.verifier().verify_metadata(request.metadata()).await?)
}
