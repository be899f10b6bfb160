//! Flag kinds, the looked-after legal basis, and the kind-specific data of a flag.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::Date;

/// What a flag says about the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum FlagKind {
    /// The child is subject to a child protection plan (code `CPP`).
    ChildProtectionPlan,
    /// The child is looked after by the local authority (code `LAC`).
    LookedAfterChild,
    /// An unborn child is subject to a child protection plan; the flag sits on the pregnant
    /// woman's record (code `UCPP`).
    UnbornChildProtectionPlan,
}

impl FlagKind {
    /// Every kind, in code order.
    pub const ALL: [Self; 3] = [
        Self::ChildProtectionPlan,
        Self::LookedAfterChild,
        Self::UnbornChildProtectionPlan,
    ];

    /// The stable code used in storage, files and reports: `CPP`, `LAC` or `UCPP`.
    pub fn code(self) -> &'static str {
        match self {
            Self::ChildProtectionPlan => "CPP",
            Self::LookedAfterChild => "LAC",
            Self::UnbornChildProtectionPlan => "UCPP",
        }
    }
}

impl fmt::Display for FlagKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for FlagKind {
    type Err = UnknownCodeError;

    /// Reads a code (`CPP`, `LAC`, `UCPP`), in any letter case.
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.code().eq_ignore_ascii_case(code))
            .ok_or(UnknownCodeError {
                what: "flag kind",
                expected: "CPP, LAC, UCPP",
            })
    }
}

impl From<FlagKind> for &'static str {
    fn from(kind: FlagKind) -> Self {
        kind.code()
    }
}

impl TryFrom<String> for FlagKind {
    type Error = UnknownCodeError;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        code.parse()
    }
}

/// Under which part of the Children Act 1989 a child is looked after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum LookedAfterLegalBasis {
    /// A care order, section 31 (code `S31`).
    Section31CareOrder,
    /// An interim care order, section 38 (code `S38`).
    Section38InterimCareOrder,
    /// Accommodated by voluntary agreement with the parents, section 20 (code `S20`).
    Section20VoluntaryAgreement,
}

impl LookedAfterLegalBasis {
    /// Every legal basis.
    pub const ALL: [Self; 3] = [
        Self::Section31CareOrder,
        Self::Section38InterimCareOrder,
        Self::Section20VoluntaryAgreement,
    ];

    /// The stable code used in storage, files and reports: `S31`, `S38` or `S20`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Section31CareOrder => "S31",
            Self::Section38InterimCareOrder => "S38",
            Self::Section20VoluntaryAgreement => "S20",
        }
    }
}

impl fmt::Display for LookedAfterLegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for LookedAfterLegalBasis {
    type Err = UnknownCodeError;

    /// Reads a code (`S31`, `S38`, `S20`), in any letter case.
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|basis| basis.code().eq_ignore_ascii_case(code))
            .ok_or(UnknownCodeError {
                what: "legal basis",
                expected: "S31, S38, S20",
            })
    }
}

impl From<LookedAfterLegalBasis> for &'static str {
    fn from(basis: LookedAfterLegalBasis) -> Self {
        basis.code()
    }
}

impl TryFrom<String> for LookedAfterLegalBasis {
    type Error = UnknownCodeError;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        code.parse()
    }
}

/// A code that names nothing. The message lists the valid codes but does not repeat the
/// input, which could be anything (even an NHS number in the wrong column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} (expected one of {expected})")]
pub struct UnknownCodeError {
    /// What the code should have named (`flag kind`, `legal basis`, ...).
    pub what: &'static str,
    /// The valid codes, comma separated.
    pub expected: &'static str,
}

/// The kind of a flag with the data only that kind carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagPlan {
    /// A child protection plan: nothing more.
    ChildProtectionPlan,
    /// A looked-after child.
    LookedAfterChild {
        /// Under which order or agreement the child is looked after.
        legal_basis: LookedAfterLegalBasis,
    },
    /// An unborn child protection plan, on the pregnant woman's record. Nothing else about
    /// the unborn child is carried.
    UnbornChildProtectionPlan {
        /// The expected date of delivery.
        expected_delivery: Date,
    },
}

impl FlagPlan {
    /// The kind of this plan.
    pub fn kind(&self) -> FlagKind {
        match self {
            Self::ChildProtectionPlan => FlagKind::ChildProtectionPlan,
            Self::LookedAfterChild { .. } => FlagKind::LookedAfterChild,
            Self::UnbornChildProtectionPlan { .. } => FlagKind::UnbornChildProtectionPlan,
        }
    }

    /// The legal basis, for a looked-after child.
    pub fn legal_basis(&self) -> Option<LookedAfterLegalBasis> {
        match self {
            Self::LookedAfterChild { legal_basis } => Some(*legal_basis),
            _ => None,
        }
    }

    /// The expected date of delivery, for an unborn child protection plan.
    pub fn expected_delivery(&self) -> Option<Date> {
        match self {
            Self::UnbornChildProtectionPlan { expected_delivery } => Some(*expected_delivery),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for kind in FlagKind::ALL {
            assert_eq!(kind.code().parse::<FlagKind>(), Ok(kind));
            assert_eq!(kind.code().to_lowercase().parse::<FlagKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.code());
        }
        assert_eq!(FlagKind::ALL.map(FlagKind::code), ["CPP", "LAC", "UCPP"]);
        let error = "XYZ".parse::<FlagKind>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown flag kind (expected one of CPP, LAC, UCPP)"
        );
    }

    #[test]
    fn legal_basis_codes_round_trip() {
        for basis in LookedAfterLegalBasis::ALL {
            assert_eq!(basis.code().parse::<LookedAfterLegalBasis>(), Ok(basis));
        }
        assert!("S47".parse::<LookedAfterLegalBasis>().is_err());
    }

    #[test]
    fn serde_uses_the_codes() {
        assert_eq!(
            serde_json::to_string(&FlagKind::UnbornChildProtectionPlan).unwrap(),
            "\"UCPP\""
        );
        assert_eq!(
            serde_json::from_str::<FlagKind>("\"lac\"").unwrap(),
            FlagKind::LookedAfterChild
        );
        assert_eq!(
            serde_json::to_string(&LookedAfterLegalBasis::Section20VoluntaryAgreement).unwrap(),
            "\"S20\""
        );
        assert!(serde_json::from_str::<FlagKind>("\"CP\"").is_err());
    }

    #[test]
    fn plan_exposes_kind_and_data() {
        let basis = LookedAfterLegalBasis::Section31CareOrder;
        let plan = FlagPlan::LookedAfterChild { legal_basis: basis };
        assert_eq!(plan.kind(), FlagKind::LookedAfterChild);
        assert_eq!(plan.legal_basis(), Some(basis));
        assert_eq!(plan.expected_delivery(), None);
        assert_eq!(
            FlagPlan::ChildProtectionPlan.kind(),
            FlagKind::ChildProtectionPlan
        );
    }
}
