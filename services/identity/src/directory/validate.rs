//! Checks of the directory's texts and codes. Each returns the normalised value or a
//! description of what is wrong, for a field violation.

use cpis_mesh::token::Activity;
use cpis_proto::common::CareSettingType;

/// Prefix of the protobuf names of care setting types.
const SETTING_PREFIX: &str = "CARE_SETTING_TYPE_";

/// A sign-in name: trimmed, lower-cased, 1 to 64 of `a-z 0-9 . _ @ -`.
pub fn normalise_username(input: &str) -> Result<String, String> {
    let username = input.trim().to_ascii_lowercase();
    if username.is_empty() {
        return Err("is required".to_owned());
    }
    if username.len() > 64 {
        return Err("must be at most 64 characters".to_owned());
    }
    if let Some(c) = username
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
    {
        return Err(format!(
            "may hold only letters, digits, '.', '_', '@' and '-', found {c:?}"
        ));
    }
    Ok(username)
}

/// A user id chosen by the caller: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn validate_user_id(input: &str) -> Result<String, String> {
    let id = input.trim();
    if id.is_empty() {
        return Err("is required".to_owned());
    }
    if id.len() > 64 {
        return Err("must be at most 64 characters".to_owned());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "may hold only letters, digits, '.', '_' and '-', found {c:?}"
        ));
    }
    Ok(id.to_owned())
}

/// A name people read: trimmed, 1 to `max` characters, no control characters.
pub fn validate_name(input: &str, max: usize) -> Result<String, String> {
    let name = input.trim();
    if name.is_empty() {
        return Err("is required".to_owned());
    }
    if name.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// A user's display name (at most 200 characters).
pub fn validate_display_name(input: &str) -> Result<String, String> {
    validate_name(input, 200)
}

/// A role's name: 1 to 40 of `a-z 0-9 _`.
pub fn validate_role_name(input: &str) -> Result<String, String> {
    let name = input.trim();
    if name.is_empty() {
        return Err("is required".to_owned());
    }
    if name.len() > 40 {
        return Err("must be at most 40 characters".to_owned());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("may hold only lower-case letters, digits and '_'".to_owned());
    }
    Ok(name.to_owned())
}

/// An activity by its dotted code (`child.check`).
pub fn parse_activity(code: &str) -> Result<Activity, String> {
    Activity::from_code(code.trim()).ok_or_else(|| {
        format!(
            "`{code}` is not an activity; activities are {}",
            Activity::ALL.map(Activity::code).join(", ")
        )
    })
}

/// The dotted code of an activity.
pub fn activity_code(activity: Activity) -> &'static str {
    activity.code()
}

/// A care setting type by its name without the protobuf prefix (`EMERGENCY_DEPARTMENT`),
/// in any letter case.
pub fn parse_setting_type(code: &str) -> Result<CareSettingType, String> {
    let name = format!("{SETTING_PREFIX}{}", code.trim().to_ascii_uppercase());
    match CareSettingType::from_str_name(&name) {
        Some(CareSettingType::Unspecified) | None => Err(format!(
            "`{code}` is not a care setting type (for example EMERGENCY_DEPARTMENT, GP_PRACTICE)"
        )),
        Some(setting) => Ok(setting),
    }
}

/// The name of a care setting type without the protobuf prefix.
pub fn setting_type_code(setting: CareSettingType) -> &'static str {
    let name = setting.as_str_name();
    name.strip_prefix(SETTING_PREFIX).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_bounded() {
        assert_eq!(normalise_username(" Alice.Smith ").unwrap(), "alice.smith");
        assert!(normalise_username("").is_err());
        assert!(normalise_username("a b").is_err());
        assert!(normalise_username(&"a".repeat(65)).is_err());
    }

    #[test]
    fn setting_types_round_trip() {
        let ed = parse_setting_type("emergency_department").unwrap();
        assert_eq!(ed, CareSettingType::EmergencyDepartment);
        assert_eq!(setting_type_code(ed), "EMERGENCY_DEPARTMENT");
        assert!(parse_setting_type("UNSPECIFIED").is_err());
        assert!(parse_setting_type("SPACESHIP").is_err());
    }

    #[test]
    fn roles_and_activities() {
        assert_eq!(
            validate_role_name("social_worker").unwrap(),
            "social_worker"
        );
        assert!(validate_role_name("Social Worker").is_err());
        assert_eq!(parse_activity("flag.manage").unwrap(), Activity::FlagManage);
        assert!(
            parse_activity("flag.burn")
                .unwrap_err()
                .contains("child.check")
        );
    }
}
