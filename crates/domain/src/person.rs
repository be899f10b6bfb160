//! The person register's answers: a person's status and the outcome of a demographics trace.
//!
//! Identity holds the register (the national demographics stand-in); uploads are traced
//! against it as real uploads are traced against the national demographics service.

use serde::{Deserialize, Serialize};

use crate::nhs_number::NhsNumber;
use crate::violation::FieldViolation;

/// The status of an NHS number in the person register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PersonStatus {
    /// In use.
    Active,
    /// Replaced by another number (for example after a duplicate record was merged).
    Superseded {
        /// The number now in use.
        by: NhsNumber,
    },
    /// No longer in use (for example the person has died or left the country).
    Inactive,
}

/// What a demographics trace of one NHS number found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceOutcome {
    /// An active, non-sensitive person with this number.
    Matched,
    /// Nobody has this number.
    NoMatch,
    /// The person's record is sensitive: nothing about it may be shared or stored.
    Sensitive,
    /// The number was replaced by another.
    Superseded {
        /// The number now in use.
        new: NhsNumber,
    },
    /// The number is no longer in use.
    Inactive,
    /// The traced input was invalid.
    Invalid {
        /// Which input field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl TraceOutcome {
    /// The outcome for a person found in the register with `status`, `sensitive` or not.
    ///
    /// Sensitivity wins over everything: nothing about a sensitive record leaves the
    /// register, not even the number that superseded it. Then the status decides: superseded,
    /// inactive, or matched.
    pub fn for_person(status: PersonStatus, sensitive: bool) -> Self {
        if sensitive {
            return Self::Sensitive;
        }
        match status {
            PersonStatus::Active => Self::Matched,
            PersonStatus::Superseded { by } => Self::Superseded { new: by },
            PersonStatus::Inactive => Self::Inactive,
        }
    }
}

impl From<FieldViolation> for TraceOutcome {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid {
            field: violation.field,
            reason: violation.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number() -> NhsNumber {
        "9434765919".parse().unwrap()
    }

    #[test]
    fn sensitivity_wins_then_status_decides() {
        let superseded = PersonStatus::Superseded { by: number() };
        assert_eq!(
            TraceOutcome::for_person(superseded, true),
            TraceOutcome::Sensitive
        );
        assert_eq!(
            TraceOutcome::for_person(PersonStatus::Active, true),
            TraceOutcome::Sensitive
        );
        assert_eq!(
            TraceOutcome::for_person(superseded, false),
            TraceOutcome::Superseded { new: number() }
        );
        assert_eq!(
            TraceOutcome::for_person(PersonStatus::Inactive, false),
            TraceOutcome::Inactive
        );
        assert_eq!(
            TraceOutcome::for_person(PersonStatus::Active, false),
            TraceOutcome::Matched
        );
    }

    #[test]
    fn serde_forms() {
        let json = serde_json::to_string(&PersonStatus::Superseded { by: number() }).unwrap();
        assert_eq!(json, r#"{"status":"SUPERSEDED","by":"9434765919"}"#);
        let outcome: TraceOutcome = serde_json::from_str(r#"{"outcome":"NO_MATCH"}"#).unwrap();
        assert_eq!(outcome, TraceOutcome::NoMatch);
    }

    #[test]
    fn debug_hides_the_superseding_number() {
        let debug = format!("{:?}", TraceOutcome::Superseded { new: number() });
        assert!(!debug.contains("943"), "{debug}");
    }
}
