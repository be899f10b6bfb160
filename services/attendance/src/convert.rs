//! Between the contract's messages and the domain's types.

use cpis_mesh::ApiError;
use cpis_proto::common::{self, OdsCode, Principal};

/// Microseconds since the epoch of a timestamp.
pub(crate) fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos / 1_000))
}

/// The timestamp of microseconds since the epoch.
pub(crate) fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1_000).unwrap_or_default(),
    }
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_us() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The contract's form of a verified user.
pub(crate) fn principal(p: &cpis_mesh::token::Principal) -> Principal {
    Principal {
        user_id: p.user_id.clone(),
        display_name: String::new(),
        role_profile_id: p.role_profile.clone(),
        role: p.role.clone(),
        organisation: Some(OdsCode {
            value: p.organisation.as_str().to_owned(),
        }),
    }
}

/// The calendar date of a wire date (none when it is not one).
pub(crate) fn date(d: &common::Date) -> Option<time::Date> {
    let month = time::Month::try_from(u8::try_from(d.month).ok()?).ok()?;
    time::Date::from_calendar_date(d.year, month, u8::try_from(d.day).ok()?).ok()
}

/// The domain's care setting type of the wire's number.
pub(crate) fn setting_type(value: i32) -> Result<cpis_domain::CareSettingType, ApiError> {
    let invalid = || ApiError::invalid("care_setting.setting_type", "is not a care setting type");
    let wire = common::CareSettingType::try_from(value).map_err(|_| invalid())?;
    wire.as_str_name()
        .strip_prefix("CARE_SETTING_TYPE_")
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_types_map_and_unspecified_is_refused() {
        assert_eq!(
            setting_type(common::CareSettingType::EmergencyDepartment as i32).unwrap(),
            cpis_domain::CareSettingType::EmergencyDepartment
        );
        assert_eq!(
            setting_type(common::CareSettingType::GpPractice as i32).unwrap(),
            cpis_domain::CareSettingType::GpPractice
        );
        assert!(setting_type(0).is_err());
        assert!(setting_type(999).is_err());
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(
            micros(&timestamp(1_234_567_890_123_456)),
            1_234_567_890_123_456
        );
    }
}
