//! Between the wire (`cpis_proto`) and identity's types, at the boundary.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cpis_domain::{NhsNumber, OdsCode};
use cpis_mesh::token::{Activity, Principal};
use cpis_proto::{common, identity as pb};
use time::{Date, Month};

use crate::audit::timestamp;
use crate::directory::{Organisation, OrganisationKind, RoleProfile, Status, User};
use crate::error::IdentityError;

/// The default page size of list RPCs.
const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page size of list RPCs.
const MAX_PAGE_SIZE: u32 = 1000;

/// The wire form of an activity.
pub(crate) fn proto_activity(activity: Activity) -> pb::Activity {
    match activity {
        Activity::ChildCheck => pb::Activity::ChildCheck,
        Activity::ChildView => pb::Activity::ChildView,
        Activity::FlagManage => pb::Activity::FlagManage,
        Activity::NotificationRead => pb::Activity::NotificationRead,
        Activity::AuditRead => pb::Activity::AuditRead,
        Activity::DirectoryAdmin => pb::Activity::DirectoryAdmin,
    }
}

/// The activity a wire value names; `None` for unspecified or unknown values.
pub(crate) fn from_proto_activity(value: i32) -> Option<Activity> {
    Activity::ALL
        .into_iter()
        .find(|a| proto_activity(*a) as i32 == value)
}

/// The wire form of a verified token's principal.
pub(crate) fn proto_principal(principal: &Principal, display_name: &str) -> common::Principal {
    common::Principal {
        user_id: principal.user_id.clone(),
        display_name: display_name.to_owned(),
        role_profile_id: principal.role_profile.clone(),
        role: principal.role.clone(),
        organisation: Some(common::OdsCode {
            value: principal.organisation.to_string(),
        }),
    }
}

/// An ODS code from the wire, or a violation of `field`.
pub(crate) fn ods_field(field: &str, code: &common::OdsCode) -> Result<OdsCode, IdentityError> {
    code.value
        .parse()
        .map_err(|e: cpis_domain::OdsCodeError| IdentityError::invalid(field, e.to_string()))
}

/// A required ODS code from the wire.
pub(crate) fn required_ods(
    field: &str,
    code: Option<&common::OdsCode>,
) -> Result<OdsCode, IdentityError> {
    match code {
        Some(code) => ods_field(field, code),
        None => Err(IdentityError::invalid(field, "is required")),
    }
}

/// An NHS number from the wire, or why it is not one.
pub(crate) fn nhs_number(number: Option<&common::NhsNumber>) -> Result<NhsNumber, String> {
    match number {
        None => Err("is required".to_owned()),
        Some(n) => n
            .value
            .parse()
            .map_err(|e: cpis_domain::NhsNumberError| e.to_string()),
    }
}

/// A calendar date from the wire, or why it is not one.
pub(crate) fn date(value: &common::Date) -> Result<Date, String> {
    let month = u8::try_from(value.month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or("the month must be 1 to 12")?;
    let day = u8::try_from(value.day).map_err(|_| "the day must be 1 to 31")?;
    if !(1..=9999).contains(&value.year) {
        return Err("the year must be 1 to 9999".to_owned());
    }
    Date::from_calendar_date(value.year, month, day).map_err(|_| "is not a real date".to_owned())
}

/// The wire form of an NHS number.
pub(crate) fn proto_nhs(number: &NhsNumber) -> common::NhsNumber {
    common::NhsNumber {
        value: number.as_str().to_owned(),
    }
}

/// The wire form of an organisation.
pub(crate) fn proto_organisation(org: &Organisation) -> pb::Organisation {
    let code = || common::OdsCode {
        value: org.code.to_string(),
    };
    pb::Organisation {
        code: Some(code()),
        name: org.name.clone(),
        kind: match org.kind {
            OrganisationKind::Health => pb::OrganisationKind::Health,
            OrganisationKind::LocalAuthority => pb::OrganisationKind::LocalAuthority,
        } as i32,
        contacts: org.contacts.as_ref().map(|c| common::AuthorityContacts {
            office_hours_phone: c
                .office_hours_phone
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            emergency_duty_phone: c.emergency_duty_phone.to_string(),
            secure_email: c
                .secure_email
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }),
        care_settings: org
            .care_settings
            .iter()
            .map(|s| common::CareSetting {
                organisation: Some(code()),
                site: s.site.clone(),
                setting_type: s.setting_type as i32,
                name: s.name.clone(),
                phone: s.phone.clone(),
            })
            .collect(),
    }
}

/// The kind a wire filter names; `None` for any.
pub(crate) fn kind_filter(value: i32) -> Result<Option<OrganisationKind>, IdentityError> {
    match pb::OrganisationKind::try_from(value) {
        Ok(pb::OrganisationKind::Unspecified) => Ok(None),
        Ok(pb::OrganisationKind::Health) => Ok(Some(OrganisationKind::Health)),
        Ok(pb::OrganisationKind::LocalAuthority) => Ok(Some(OrganisationKind::LocalAuthority)),
        Err(_) => Err(IdentityError::invalid(
            "kind",
            "is not an organisation kind",
        )),
    }
}

/// The wire form of a role profile, with what it grants now.
pub(crate) fn proto_profile(profile: &RoleProfile, activities: &[Activity]) -> pb::RoleProfile {
    pb::RoleProfile {
        role_profile_id: profile.role_profile_id.clone(),
        user_id: profile.user_id.clone(),
        organisation: Some(common::OdsCode {
            value: profile.organisation.to_string(),
        }),
        role: profile.role.clone(),
        activities: activities
            .iter()
            .map(|a| proto_activity(*a) as i32)
            .collect(),
        status: match profile.status {
            Status::Active => pb::RoleProfileStatus::Active,
            Status::Disabled => pb::RoleProfileStatus::Disabled,
        } as i32,
        create_time: Some(timestamp(profile.create_time)),
    }
}

/// The wire form of a user with their role profiles.
pub(crate) fn proto_user(user: &User, role_profiles: Vec<pb::RoleProfile>) -> pb::User {
    pb::User {
        user_id: user.user_id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        status: match user.status {
            Status::Active => pb::UserStatus::Active,
            Status::Disabled => pb::UserStatus::Disabled,
        } as i32,
        role_profiles,
        create_time: Some(timestamp(user.create_time)),
    }
}

/// The page size a request asks for, by the paging convention.
pub(crate) fn page_size(value: i32) -> Result<u32, IdentityError> {
    match u32::try_from(value) {
        Err(_) => Err(IdentityError::invalid("page_size", "must not be negative")),
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

/// An opaque page token: the last key of the page, bound to the request's filter so that a
/// token is refused with another filter.
pub(crate) fn page_token(filter: &str, last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{filter}\n{last_key}"))
}

/// The last key of the previous page, from a request's page token (`None` for the first).
pub(crate) fn after_key(token: &str, filter: &str) -> Result<Option<String>, IdentityError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        IdentityError::invalid(
            "page_token",
            "is not a token of this list with these filters",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    match text.split_once('\n') {
        Some((f, key)) if f == filter && !key.is_empty() => Ok(Some(key.to_owned())),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form of a date.
    fn proto_date(date: Date) -> common::Date {
        common::Date {
            year: date.year(),
            month: i32::from(u8::from(date.month())),
            day: i32::from(date.day()),
        }
    }

    #[test]
    fn page_tokens_are_bound_to_their_filter() {
        let token = page_token("kind=1", "RJ1");
        assert_eq!(after_key(&token, "kind=1").unwrap().as_deref(), Some("RJ1"));
        assert!(after_key(&token, "kind=2").is_err());
        assert!(after_key("!!", "kind=1").is_err());
        assert_eq!(after_key("", "kind=1").unwrap(), None);
    }

    #[test]
    fn page_sizes_follow_the_convention() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn activities_map_both_ways() {
        for activity in Activity::ALL {
            assert_eq!(
                from_proto_activity(proto_activity(activity) as i32),
                Some(activity)
            );
        }
        assert_eq!(from_proto_activity(0), None);
    }

    #[test]
    fn dates_are_checked() {
        let ok = common::Date {
            year: 2020,
            month: 2,
            day: 29,
        };
        assert_eq!(proto_date(date(&ok).unwrap()), ok);
        assert!(
            date(&common::Date {
                year: 2021,
                month: 2,
                day: 29
            })
            .is_err()
        );
        assert!(
            date(&common::Date {
                year: 2021,
                month: 13,
                day: 1
            })
            .is_err()
        );
    }
}
