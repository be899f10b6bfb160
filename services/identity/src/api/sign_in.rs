//! Sign-in (`IssueToken`) and the published keys (`GetSigningKeys`).

use cpis_mesh::authz::Caller;
use cpis_mesh::token::{Claims, SessionClaims};
use cpis_proto::audit::AuditEvent;
use cpis_proto::audit::AuditOutcome;
use cpis_proto::identity::{
    GetSigningKeysResponse, IssueTokenRequest, IssueTokenResponse, SigningKey,
};
use time::OffsetDateTime;
use tonic::Request;

use super::IdentityState;
use super::authorize::current_grant;
use super::convert::{proto_activity, proto_principal};
use crate::audit::{self, AuditActor, timestamp};
use crate::directory::{RoleProfile, Status, normalise_username};
use crate::error::IdentityError;

/// The longest username or credential looked at (longer ones are simply wrong).
const MAX_INPUT_BYTES: usize = crate::credential::MAX_CREDENTIAL_BYTES;

/// `IssueToken`: checks the limits, the credential, the user and the role profile, signs.
pub(crate) async fn issue_token(
    state: &IdentityState,
    request: Request<IssueTokenRequest>,
) -> Result<IssueTokenResponse, IdentityError> {
    let caller = super::caller(&request)?;
    let body = request.into_inner();
    let mut violations = Vec::new();
    if body.username.trim().is_empty() {
        violations.push(cpis_domain::FieldViolation::new("username", "is required"));
    }
    if body.credential.is_empty() {
        violations.push(cpis_domain::FieldViolation::new(
            "credential",
            "is required",
        ));
    }
    if !violations.is_empty() {
        return Err(IdentityError::Invalid(violations));
    }
    let system = caller.describe();
    let username = body.username.trim().to_ascii_lowercase();
    let actor = AuditActor::from_caller(&caller);
    let failure = |reason: &str| {
        actor
            .event(audit::SIGN_IN, AuditOutcome::Denied)
            .target(format!("username:{username}"))
            .reason(reason)
            .build()
    };

    if state.limiter.is_locked(&username, &system).await? {
        state
            .store
            .record_sign_in(None, OffsetDateTime::now_utc(), &[failure("locked out")])
            .await?;
        return Err(IdentityError::LockedOut);
    }
    // A name that cannot be a username is treated like an unknown one, with the same cost.
    let user = match normalise_username(&username) {
        Ok(name) if body.credential.len() <= MAX_INPUT_BYTES => {
            state.store.user_by_username(&name).await?
        }
        _ => None,
    };
    let hash = user.as_ref().map(|u| u.credential_hash.clone());
    let hasher = state.hasher.clone();
    let credential = body.credential;
    // Argon2 is slow by design: off the async threads.
    let verified = tokio::task::spawn_blocking(move || hasher.verify(&credential, hash.as_deref()))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        state.limiter.record_failure(&username, &system).await?;
        state
            .store
            .record_sign_in(
                None,
                OffsetDateTime::now_utc(),
                &[failure("wrong username or credential")],
            )
            .await?;
        return Err(IdentityError::SignInFailed);
    };
    state.limiter.record_success(&username).await?;

    let refused = |reason: String| refuse(state, failure(&reason), reason);
    if user.status != Status::Active {
        return refused("the user is disabled".to_owned()).await;
    }
    let profiles = state
        .store
        .role_profiles_of(std::slice::from_ref(&user.user_id))
        .await?;
    let profile = match choose_profile(&profiles, body.role_profile_id.trim()) {
        Ok(profile) => profile,
        Err(Choice::Several) => {
            return Err(IdentityError::invalid(
                "role_profile_id",
                "is required: the user has several active role profiles",
            ));
        }
        Err(Choice::Refused(reason)) => return refused(reason.to_owned()).await,
    };
    // A system signs in only users of its own organisation.
    if let Caller::OrgSystem { system, .. } = &caller
        && system.organisation != profile.organisation
    {
        return refused(
            "the role profile belongs to another organisation than the calling system".to_owned(),
        )
        .await;
    }
    let (activities, kind) = current_grant(state, &profile.role, &profile.organisation).await?;

    let now = OffsetDateTime::now_utc();
    let lifetime = time::Duration::try_from(state.token_lifetime).unwrap_or(time::Duration::MINUTE);
    let expires = now + lifetime;
    let claims = Claims {
        iss: state.rules.issuer.clone(),
        sub: user.user_id.clone(),
        aud: state.rules.audience.clone(),
        iat: now.unix_timestamp(),
        nbf: now.unix_timestamp(),
        exp: expires.unix_timestamp(),
        jti: uuid::Uuid::new_v4().to_string(),
        org: profile.organisation.to_string(),
        rp: profile.role_profile_id.clone(),
        role: profile.role.clone(),
        act: activities.iter().map(|a| a.code().to_owned()).collect(),
    };
    // The organisation's kind travels as `ok`, so that a service can scope what a user of a
    // local authority or of a health organisation sees without asking identity.
    let organisation_kind = cpis_mesh::token::OrganisationKind::from_claim(
        kind.map(crate::directory::OrganisationKind::code),
    );
    let token = state.keys.signer().sign_session(&SessionClaims {
        claims: claims.clone(),
        ok: organisation_kind.code().map(str::to_owned),
    });
    let principal = cpis_mesh::token::Principal {
        user_id: user.user_id.clone(),
        organisation: profile.organisation.clone(),
        organisation_kind,
        role_profile: profile.role_profile_id.clone(),
        role: profile.role.clone(),
        activities: activities.iter().copied().collect(),
        token_id: claims.jti.clone(),
        expires_at: claims.exp,
    };
    let principal = proto_principal(&principal, &user.display_name);
    let success = actor
        .clone()
        .with_user(principal.clone())
        .event(audit::SIGN_IN, AuditOutcome::Success)
        .target(format!("user:{}", user.user_id))
        .reason(format!("token {}", claims.jti))
        .build();
    state
        .store
        .record_sign_in(Some(&user.user_id), now, &[success])
        .await?;
    tracing::info!(user_id = user.user_id, role = profile.role, "signed in");
    Ok(IssueTokenResponse {
        access_token: token,
        token_type: "Bearer".to_owned(),
        expire_time: Some(timestamp(expires)),
        principal: Some(principal),
        activities: activities
            .into_iter()
            .map(|a| proto_activity(a) as i32)
            .collect(),
    })
}

/// Audits a refused sign-in (the credential was right) and answers PERMISSION_DENIED.
async fn refuse(
    state: &IdentityState,
    event: AuditEvent,
    reason: String,
) -> Result<IssueTokenResponse, IdentityError> {
    state
        .store
        .record_sign_in(None, OffsetDateTime::now_utc(), &[event])
        .await?;
    Err(IdentityError::Denied(reason))
}

enum Choice {
    Several,
    Refused(&'static str),
}

/// The role profile to sign in with: the one asked for, which must be the user's and
/// active, or the user's only active one.
fn choose_profile<'a>(
    profiles: &'a [RoleProfile],
    wanted: &str,
) -> Result<&'a RoleProfile, Choice> {
    if !wanted.is_empty() {
        return match profiles.iter().find(|p| p.role_profile_id == wanted) {
            None => Err(Choice::Refused("the role profile is not the user's")),
            Some(p) if p.status != Status::Active => {
                Err(Choice::Refused("the role profile is disabled"))
            }
            Some(p) => Ok(p),
        };
    }
    let mut active = profiles.iter().filter(|p| p.status == Status::Active);
    match (active.next(), active.next()) {
        (Some(only), None) => Ok(only),
        (Some(_), Some(_)) => Err(Choice::Several),
        (None, _) => Err(Choice::Refused("the user has no active role profile")),
    }
}

/// `GetSigningKeys`: every key that may still verify an unexpired token.
pub(crate) fn signing_keys(state: &IdentityState) -> GetSigningKeysResponse {
    let keys = state
        .keys
        .published(OffsetDateTime::now_utc())
        .into_iter()
        .map(|k| SigningKey {
            key_id: k.key_id,
            algorithm: "EdDSA".to_owned(),
            public_key: k.public_key,
            create_time: Some(timestamp(k.create_time)),
            current: k.current,
            expire_time: k.expire_time.map(timestamp),
        })
        .collect();
    GetSigningKeysResponse {
        keys,
        max_cache_age: Some(prost_types::Duration {
            seconds: i64::try_from(state.key_cache_age.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    }
}
