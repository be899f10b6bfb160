//! Whose events a user with `audit.read` may query, by the kind of organisation the user acts
//! for (the token's `ok` claim):
//!
//! - a national privacy office (`audit.national_organisations`): the whole log;
//! - a local authority: the accesses to one child at a time, a child for whom the authority
//!   holds or held a flag, as the flag registry says;
//! - a health organisation: its own organisation's events only;
//! - an unknown kind (a token issued before `ok` existed): both restrictions at once.

use std::time::Duration;

use cpis_domain::OdsCode;
use cpis_mesh::ApiError;
use cpis_mesh::client::MeshChannel;
use cpis_mesh::token::{OrganisationKind, Principal};
use cpis_proto::common::NhsNumber;
use cpis_proto::flags::GetFlagsRequest;
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;

use crate::store::EventFilter;

/// The one answer to a local authority asking about a child it does not flag, whether the
/// child is unknown or flagged by another authority: nothing about the child leaks.
pub(crate) const NOT_FLAGGED: &str =
    "the organisation holds no flag for this child, so it may not query its accesses";

/// The answer to a health organisation's user naming another organisation.
pub(crate) const OTHER_ORGANISATION: &str =
    "a user of this organisation may query only its own organisation's events";

/// The answer when the flag registry cannot say whether the authority flags the child.
pub(crate) const FLAGS_UNAVAILABLE: &str = "the flag registry is unavailable, so whether this organisation flags the child cannot be checked; try again later";

/// The field violation of a local authority's query without a child.
pub(crate) const CHILD_REQUIRED: &str =
    "is required for this organisation: it may query the accesses to a child it has flags for";

/// What restricts a user's queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope {
    /// A child must be named, and the user's organisation must hold or have held a flag for
    /// it.
    pub(crate) flagged_child_only: bool,
    /// Only events of the user's own organisation.
    pub(crate) own_organisation_only: bool,
}

impl Scope {
    /// The scope of `principal`, whose organisation is national when listed in `national`.
    pub(crate) fn of(principal: &Principal, national: &[OdsCode]) -> Self {
        if national.contains(&principal.organisation) {
            return Self {
                flagged_child_only: false,
                own_organisation_only: false,
            };
        }
        match principal.organisation_kind {
            OrganisationKind::LocalAuthority => Self {
                flagged_child_only: true,
                own_organisation_only: false,
            },
            OrganisationKind::Health => Self {
                flagged_child_only: false,
                own_organisation_only: true,
            },
            OrganisationKind::Unknown => Self {
                flagged_child_only: true,
                own_organisation_only: true,
            },
        }
    }
}

/// Why a query is not answered.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The request itself is wrong for this user (a field violation); not a denial.
    Invalid(ApiError),
    /// PERMISSION_DENIED, audited as denied.
    Denied(&'static str),
    /// The flag registry did not answer; audited as failed.
    Unavailable,
}

/// The flag registry, as the audit service asks it.
#[derive(Debug, Clone)]
pub(crate) struct FlagRegistry {
    pub(crate) client: FlagRegistryServiceClient<MeshChannel>,
    pub(crate) deadline: Duration,
}

impl FlagRegistry {
    /// Whether `authority` holds a flag for `child` now or held one (history included).
    async fn flags(&self, authority: &OdsCode, child: &str) -> Result<bool, tonic::Status> {
        let mut request = tonic::Request::new(GetFlagsRequest {
            nhs_number: Some(NhsNumber {
                value: child.to_owned(),
            }),
            include_history: true,
        });
        request.set_timeout(self.deadline);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(self.deadline, client.get_flags(request))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("flag registry deadline"))??;
        Ok(answer.into_inner().flags.iter().any(|flag| {
            flag.authority
                .as_ref()
                .and_then(|a| a.code.as_ref())
                .is_some_and(|code| code.value.eq_ignore_ascii_case(authority.as_str()))
        }))
    }
}

/// Narrows `filter` to what `principal` may see under `scope`, asking the flag registry when
/// the scope needs it.
pub(crate) async fn apply(
    scope: Scope,
    principal: &Principal,
    filter: &mut EventFilter,
    flags: &FlagRegistry,
) -> Result<(), Refusal> {
    if scope.own_organisation_only {
        match filter.organisation.as_deref() {
            Some(named) if named != principal.organisation.as_str() => {
                return Err(Refusal::Denied(OTHER_ORGANISATION));
            }
            _ => filter.organisation = Some(principal.organisation.as_str().to_owned()),
        }
    }
    if scope.flagged_child_only {
        let Some(child) = filter.subject_nhs_number.as_deref() else {
            return Err(Refusal::Invalid(ApiError::invalid(
                "nhs_number",
                CHILD_REQUIRED,
            )));
        };
        match flags.flags(&principal.organisation, child).await {
            Ok(true) => {}
            Ok(false) => return Err(Refusal::Denied(NOT_FLAGGED)),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "flag registry did not answer an audit query's check");
                return Err(Refusal::Unavailable);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn principal(org: &str, kind: OrganisationKind) -> Principal {
        Principal {
            user_id: "u".into(),
            organisation: org.parse().unwrap(),
            organisation_kind: kind,
            role_profile: "rp".into(),
            role: "privacy_officer".into(),
            activities: BTreeSet::new(),
            token_id: "t".into(),
            expires_at: 0,
        }
    }

    #[test]
    fn the_kind_decides_the_scope_and_unknown_is_the_narrowest() {
        let national: Vec<OdsCode> = vec!["X26".parse().unwrap()];
        let scope = |org, kind| {
            let s = Scope::of(&principal(org, kind), &national);
            (s.flagged_child_only, s.own_organisation_only)
        };
        // A national office keeps the whole log, whatever its token says of its kind.
        assert_eq!(scope("X26", OrganisationKind::Unknown), (false, false));
        assert_eq!(
            scope("E09000007", OrganisationKind::LocalAuthority),
            (true, false)
        );
        assert_eq!(scope("RJ1", OrganisationKind::Health), (false, true));
        assert_eq!(scope("RJ1", OrganisationKind::Unknown), (true, true));
    }
}
