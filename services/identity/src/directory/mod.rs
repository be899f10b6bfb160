//! The directory: organisations (health organisations with their care settings, local
//! authorities with their contacts), users, role profiles, and the activities each role grants.
//!
//! These types are validated: a value of them is what the store holds. Input (RPCs, the
//! directory file) is checked by the functions here, every problem named by its field.

pub mod file;
pub mod import;
mod validate;

use std::collections::BTreeSet;

use cpis_domain::{AuthorityContacts, OdsCode};
use cpis_mesh::token::Activity;
use cpis_proto::common::CareSettingType;
use time::OffsetDateTime;

pub use validate::{
    activity_code, normalise_username, parse_activity, parse_setting_type, setting_type_code,
    validate_display_name, validate_name, validate_role_name, validate_user_id,
};

/// The kind of an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrganisationKind {
    /// A health organisation running care settings.
    Health,
    /// A local authority (children's social care).
    LocalAuthority,
}

impl OrganisationKind {
    /// The code in storage and the directory file.
    pub fn code(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::LocalAuthority => "local_authority",
        }
    }

    /// The kind with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "health" => Some(Self::Health),
            "local_authority" => Some(Self::LocalAuthority),
            _ => None,
        }
    }

    /// Whether a role profile at an organisation of this kind may exercise `activity`.
    ///
    /// Checking and viewing children happen at care settings, so only health organisations;
    /// flags and inboxes belong to local authorities. A role that lists more is cut down to
    /// these when a token is issued, so a local authority user never carries a health
    /// activity.
    pub fn allows(self, activity: Activity) -> bool {
        match activity {
            Activity::ChildCheck | Activity::ChildView => self == Self::Health,
            Activity::FlagManage | Activity::NotificationRead => self == Self::LocalAuthority,
            Activity::AuditRead | Activity::DirectoryAdmin => true,
        }
    }
}

/// One care setting of a health organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareSettingEntry {
    /// The site's code or name; empty for a single-site organisation.
    pub site: String,
    /// The type of setting.
    pub setting_type: CareSettingType,
    /// A name for people to read; may be empty.
    pub name: String,
    /// A phone number to call back; may be empty.
    pub phone: String,
}

/// An organisation of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// Its ODS code.
    pub code: OdsCode,
    /// Its name.
    pub name: String,
    /// Health organisation or local authority.
    pub kind: OrganisationKind,
    /// A local authority's contacts; `None` for a health organisation.
    pub contacts: Option<AuthorityContacts>,
    /// A health organisation's care settings; empty for a local authority.
    pub care_settings: Vec<CareSettingEntry>,
}

/// Whether a user or role profile may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// In use.
    Active,
    /// Disabled: no token is issued, Authorize denies existing ones.
    Disabled,
}

impl Status {
    /// The code in storage and the directory file.
    pub fn code(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// The status with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A role and the activities it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Its name (`clinician`).
    pub name: String,
    /// What it grants.
    pub activities: BTreeSet<Activity>,
}

impl Role {
    /// The activities the role grants at an organisation of `kind`.
    pub fn activities_at(&self, kind: OrganisationKind) -> BTreeSet<Activity> {
        self.activities
            .iter()
            .copied()
            .filter(|a| kind.allows(*a))
            .collect()
    }
}

/// A person who signs in.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The stable id (`sub` of their tokens).
    pub user_id: String,
    /// The sign-in name, lower case, unique.
    pub username: String,
    /// The name people read.
    pub display_name: String,
    /// Whether the user may sign in.
    pub status: Status,
    /// The argon2id PHC string of the credential.
    pub credential_hash: String,
    /// When the user was added.
    pub create_time: OffsetDateTime,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A user's role at one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProfile {
    /// Its id.
    pub role_profile_id: String,
    /// The user holding it.
    pub user_id: String,
    /// Where the role is held.
    pub organisation: OdsCode,
    /// The role.
    pub role: String,
    /// Whether it may be used.
    pub status: Status,
    /// When it was added.
    pub create_time: OffsetDateTime,
}

/// The whole directory, as exported and imported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Every role.
    pub roles: Vec<Role>,
    /// Every organisation.
    pub organisations: Vec<Organisation>,
    /// Every user.
    pub users: Vec<User>,
    /// Every role profile.
    pub role_profiles: Vec<RoleProfile>,
}

/// The roles a new directory starts with (also seeded by the first migration).
pub fn default_roles() -> Vec<Role> {
    use Activity::*;
    let role = |name: &str, activities: &[Activity]| Role {
        name: name.to_owned(),
        activities: activities.iter().copied().collect(),
    };
    vec![
        role("administrator", &[DirectoryAdmin]),
        role("clinician", &[ChildCheck, ChildView]),
        role("privacy_officer", &[AuditRead]),
        role("registration_clerk", &[ChildCheck]),
        role("social_worker", &[FlagManage, NotificationRead]),
    ]
}

/// Activities as stored: their codes, sorted, separated by spaces.
pub fn activities_to_text(activities: &BTreeSet<Activity>) -> String {
    activities
        .iter()
        .map(|a| a.code())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Activities from their stored form; unknown codes (from a newer version) are skipped.
pub fn activities_from_text(text: &str) -> BTreeSet<Activity> {
    text.split_whitespace()
        .filter_map(Activity::from_code)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_authority_grants_no_health_activity() {
        let everything = Role {
            name: "everything".into(),
            activities: Activity::ALL.into_iter().collect(),
        };
        let la = everything.activities_at(OrganisationKind::LocalAuthority);
        assert!(!la.contains(&Activity::ChildCheck));
        assert!(!la.contains(&Activity::ChildView));
        assert!(la.contains(&Activity::FlagManage));
        let health = everything.activities_at(OrganisationKind::Health);
        assert!(!health.contains(&Activity::FlagManage));
        assert!(health.contains(&Activity::ChildCheck));
    }

    #[test]
    fn activities_round_trip_as_text() {
        let role = &default_roles()[1];
        let text = activities_to_text(&role.activities);
        assert_eq!(text, "child.check child.view");
        assert_eq!(activities_from_text(&text), role.activities);
        assert_eq!(
            activities_from_text("child.view some.future"),
            [Activity::ChildView].into_iter().collect()
        );
    }
}
