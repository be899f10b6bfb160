//! Care settings: where a child is seen, and whether that is unscheduled care.
//!
//! Unscheduled care (emergency departments and the like) is where a check notifies the
//! child's local authority; scheduled care (GP, health visiting, school nursing) views are
//! silent, as in the national system, so authorities are not flooded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::flag::UnknownCodeError;
use crate::ods::OdsCode;
use crate::text::{TextError, printable};

/// The longest site name accepted.
const MAX_SITE: usize = 100;

/// The kind of place a child is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum CareSettingType {
    /// An emergency department (unscheduled).
    EmergencyDepartment,
    /// An urgent treatment centre (unscheduled).
    UrgentTreatmentCentre,
    /// A walk-in centre (unscheduled).
    WalkInCentre,
    /// A minor injuries unit (unscheduled).
    MinorInjuriesUnit,
    /// An out-of-hours GP service (unscheduled).
    OutOfHoursGp,
    /// NHS 111 (unscheduled).
    Nhs111,
    /// An ambulance service (unscheduled).
    Ambulance,
    /// A maternity unit (unscheduled).
    Maternity,
    /// A paediatric ward (unscheduled).
    PaediatricWard,
    /// A GP practice (scheduled).
    GpPractice,
    /// Health visiting, of the 0-19 services (scheduled).
    HealthVisiting,
    /// School nursing, of the 0-19 services (scheduled).
    SchoolNursing,
    /// Any other scheduled care.
    OtherScheduled,
}

impl CareSettingType {
    /// Every setting type, unscheduled first.
    pub const ALL: [Self; 13] = [
        Self::EmergencyDepartment,
        Self::UrgentTreatmentCentre,
        Self::WalkInCentre,
        Self::MinorInjuriesUnit,
        Self::OutOfHoursGp,
        Self::Nhs111,
        Self::Ambulance,
        Self::Maternity,
        Self::PaediatricWard,
        Self::GpPractice,
        Self::HealthVisiting,
        Self::SchoolNursing,
        Self::OtherScheduled,
    ];

    /// Whether this is unscheduled care, where a check notifies the child's authority.
    pub fn is_unscheduled(self) -> bool {
        !self.is_scheduled()
    }

    /// Whether this is scheduled care, where views are silent.
    pub fn is_scheduled(self) -> bool {
        matches!(
            self,
            Self::GpPractice | Self::HealthVisiting | Self::SchoolNursing | Self::OtherScheduled
        )
    }

    /// The stable code used in storage, files and reports (`EMERGENCY_DEPARTMENT`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::EmergencyDepartment => "EMERGENCY_DEPARTMENT",
            Self::UrgentTreatmentCentre => "URGENT_TREATMENT_CENTRE",
            Self::WalkInCentre => "WALK_IN_CENTRE",
            Self::MinorInjuriesUnit => "MINOR_INJURIES_UNIT",
            Self::OutOfHoursGp => "OUT_OF_HOURS_GP",
            Self::Nhs111 => "NHS_111",
            Self::Ambulance => "AMBULANCE",
            Self::Maternity => "MATERNITY",
            Self::PaediatricWard => "PAEDIATRIC_WARD",
            Self::GpPractice => "GP_PRACTICE",
            Self::HealthVisiting => "HEALTH_VISITING",
            Self::SchoolNursing => "SCHOOL_NURSING",
            Self::OtherScheduled => "OTHER_SCHEDULED",
        }
    }
}

impl fmt::Display for CareSettingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for CareSettingType {
    type Err = UnknownCodeError;

    /// Reads a code, in any letter case.
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|setting| setting.code().eq_ignore_ascii_case(code))
            .ok_or(UnknownCodeError {
                what: "care setting type",
                expected: "EMERGENCY_DEPARTMENT, URGENT_TREATMENT_CENTRE, WALK_IN_CENTRE, \
                           MINOR_INJURIES_UNIT, OUT_OF_HOURS_GP, NHS_111, AMBULANCE, MATERNITY, \
                           PAEDIATRIC_WARD, GP_PRACTICE, HEALTH_VISITING, SCHOOL_NURSING, \
                           OTHER_SCHEDULED",
            })
    }
}

impl From<CareSettingType> for &'static str {
    fn from(setting: CareSettingType) -> Self {
        setting.code()
    }
}

impl TryFrom<String> for CareSettingType {
    type Error = UnknownCodeError;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        code.parse()
    }
}

/// Where a child is seen: the organisation, optionally its site, and the kind of setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CareSettingFields")]
pub struct CareSetting {
    organisation: OdsCode,
    site: Option<String>,
    setting_type: CareSettingType,
}

impl CareSetting {
    /// A setting of `organisation`. The site (a site code or name) is trimmed; blank means
    /// none; otherwise at most 100 characters, no control characters.
    pub fn new(
        organisation: OdsCode,
        site: Option<&str>,
        setting_type: CareSettingType,
    ) -> Result<Self, TextError> {
        let site = site
            .filter(|site| !site.trim().is_empty())
            .map(|site| printable(site, MAX_SITE))
            .transpose()?;
        Ok(Self {
            organisation,
            site,
            setting_type,
        })
    }

    /// The organisation (ODS code) running the setting.
    pub fn organisation(&self) -> &OdsCode {
        &self.organisation
    }

    /// The site within the organisation, if given.
    pub fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }

    /// The kind of setting.
    pub fn setting_type(&self) -> CareSettingType {
        self.setting_type
    }

    /// Whether a check here is unscheduled care (and so notifies the child's authority).
    pub fn is_unscheduled(&self) -> bool {
        self.setting_type.is_unscheduled()
    }
}

/// The serde form of a [`CareSetting`], validated on the way in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CareSettingFields {
    organisation: OdsCode,
    #[serde(default)]
    site: Option<String>,
    setting_type: CareSettingType,
}

impl TryFrom<CareSettingFields> for CareSetting {
    type Error = TextError;

    fn try_from(fields: CareSettingFields) -> Result<Self, Self::Error> {
        Self::new(
            fields.organisation,
            fields.site.as_deref(),
            fields.setting_type,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_and_unscheduled() {
        let scheduled: Vec<_> = CareSettingType::ALL
            .into_iter()
            .filter(|setting| setting.is_scheduled())
            .collect();
        assert_eq!(
            scheduled,
            [
                CareSettingType::GpPractice,
                CareSettingType::HealthVisiting,
                CareSettingType::SchoolNursing,
                CareSettingType::OtherScheduled
            ]
        );
        assert!(CareSettingType::EmergencyDepartment.is_unscheduled());
        assert!(CareSettingType::Nhs111.is_unscheduled());
        assert!(CareSettingType::Maternity.is_unscheduled());
        assert!(!CareSettingType::GpPractice.is_unscheduled());
    }

    #[test]
    fn codes_round_trip() {
        for setting in CareSettingType::ALL {
            assert_eq!(setting.code().parse(), Ok(setting));
            assert_eq!(setting.code().to_lowercase().parse(), Ok(setting));
        }
        assert!("A_AND_E".parse::<CareSettingType>().is_err());
    }

    #[test]
    fn sites_are_optional_and_bounded() {
        let trust = OdsCode::parse("RR8").unwrap();
        let setting = CareSetting::new(
            trust.clone(),
            Some(" LGI "),
            CareSettingType::EmergencyDepartment,
        )
        .unwrap();
        assert_eq!(setting.site(), Some("LGI"));
        assert!(setting.is_unscheduled());
        let blank = CareSetting::new(trust.clone(), Some(""), CareSettingType::GpPractice).unwrap();
        assert_eq!(blank.site(), None);
        assert_eq!(
            CareSetting::new(trust, Some(&"x".repeat(101)), CareSettingType::Ambulance),
            Err(TextError::TooLong {
                max: 100,
                length: 101
            })
        );
    }

    #[test]
    fn serde_round_trip() {
        let setting = CareSetting::new(
            OdsCode::parse("RR8").unwrap(),
            Some("LGI"),
            CareSettingType::EmergencyDepartment,
        )
        .unwrap();
        let json = serde_json::to_string(&setting).unwrap();
        assert_eq!(
            json,
            r#"{"organisation":"RR8","site":"LGI","setting_type":"EMERGENCY_DEPARTMENT"}"#
        );
        assert_eq!(serde_json::from_str::<CareSetting>(&json).unwrap(), setting);
        assert!(
            serde_json::from_str::<CareSetting>(
                r#"{"organisation":"RR8","site":"a\tb","setting_type":"AMBULANCE"}"#
            )
            .is_err()
        );
    }
}
