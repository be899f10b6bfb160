//! Upload outcomes: what became of each record of a bulk upload, and of the file as a whole.

use serde::{Deserialize, Serialize};

use crate::nhs_number::NhsNumber;
use crate::person::TraceOutcome;
use crate::violation::FieldViolation;

/// What became of one record of an upload. Every record's outcome is returned to the
/// uploader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordOutcome {
    /// Matched in the register and stored.
    Stored,
    /// Nobody in the register has this NHS number: refused.
    NoMatch,
    /// The person's record is sensitive: refused, nothing stored.
    SensitiveRefused,
    /// The person was found but the record's details did not verify against the register:
    /// refused.
    NotVerified,
    /// The number was superseded: stored under the new number, and reported so the authority
    /// can update its own records.
    Superseded {
        /// The number the flag is stored under.
        stored_under: NhsNumber,
    },
    /// The number is no longer in use: refused and reported.
    Inactive,
    /// The record itself is invalid: refused.
    Invalid {
        /// Which field of the record.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl RecordOutcome {
    /// The outcome of a record whose trace gave `trace`, once the store accepted it: a match
    /// is stored, a superseded number is stored under the new one, everything else is
    /// refused with its reason.
    pub fn from_trace(trace: TraceOutcome) -> Self {
        match trace {
            TraceOutcome::Matched => Self::Stored,
            TraceOutcome::NoMatch => Self::NoMatch,
            TraceOutcome::Sensitive => Self::SensitiveRefused,
            TraceOutcome::Superseded { new } => Self::Superseded { stored_under: new },
            TraceOutcome::Inactive => Self::Inactive,
            TraceOutcome::Invalid { field, reason } => Self::Invalid { field, reason },
        }
    }

    /// Whether the record was stored (as given, or under its new number).
    pub fn is_stored(&self) -> bool {
        matches!(self, Self::Stored | Self::Superseded { .. })
    }

    /// The stable code used in reports: `STORED`, `NO_MATCH`, `SENSITIVE_REFUSED`,
    /// `NOT_VERIFIED`, `SUPERSEDED`, `INACTIVE` or `INVALID`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Stored => "STORED",
            Self::NoMatch => "NO_MATCH",
            Self::SensitiveRefused => "SENSITIVE_REFUSED",
            Self::NotVerified => "NOT_VERIFIED",
            Self::Superseded { .. } => "SUPERSEDED",
            Self::Inactive => "INACTIVE",
            Self::Invalid { .. } => "INVALID",
        }
    }
}

impl From<FieldViolation> for RecordOutcome {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid {
            field: violation.field,
            reason: violation.description,
        }
    }
}

/// What became of an upload as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileOutcome {
    /// Every record was stored (an empty upload included).
    Success,
    /// Some records were stored, some refused.
    Partial,
    /// No record was stored.
    Failed,
    /// The file could not be read (bad structure, record count mismatch, broken stream):
    /// nothing applied.
    Corrupt,
    /// The demographics trace could not be done: nothing applied, try again later.
    DemographicsUnavailable,
}

impl FileOutcome {
    /// The outcome of an upload whose records all went through, from their outcomes.
    ///
    /// Every record stored (as given or under a superseding number): success; none stored:
    /// failed; some: partial. An empty upload stores everything it holds: success (a snapshot
    /// upload with no records legitimately ends all the authority's flags). `Corrupt` and
    /// `DemographicsUnavailable` are decided before records have outcomes and never come from
    /// here.
    pub fn from_records(records: &[RecordOutcome]) -> Self {
        let stored = records.iter().filter(|record| record.is_stored()).count();
        if stored == records.len() {
            Self::Success
        } else if stored == 0 {
            Self::Failed
        } else {
            Self::Partial
        }
    }

    /// The stable code used in reports: `SUCCESS`, `PARTIAL`, `FAILED`, `CORRUPT` or
    /// `DEMOGRAPHICS_UNAVAILABLE`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Partial => "PARTIAL",
            Self::Failed => "FAILED",
            Self::Corrupt => "CORRUPT",
            Self::DemographicsUnavailable => "DEMOGRAPHICS_UNAVAILABLE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superseded() -> RecordOutcome {
        RecordOutcome::Superseded {
            stored_under: "9434765919".parse().unwrap(),
        }
    }

    #[test]
    fn file_outcome_follows_the_records() {
        use RecordOutcome::*;
        assert_eq!(FileOutcome::from_records(&[]), FileOutcome::Success);
        assert_eq!(
            FileOutcome::from_records(&[Stored, superseded()]),
            FileOutcome::Success
        );
        assert_eq!(
            FileOutcome::from_records(&[Stored, NoMatch]),
            FileOutcome::Partial
        );
        assert_eq!(
            FileOutcome::from_records(&[superseded(), Inactive]),
            FileOutcome::Partial
        );
        assert_eq!(
            FileOutcome::from_records(&[NoMatch, SensitiveRefused, NotVerified, Inactive]),
            FileOutcome::Failed
        );
        let invalid = RecordOutcome::from(FieldViolation::new("nhs_number", "is empty"));
        assert_eq!(FileOutcome::from_records(&[invalid]), FileOutcome::Failed);
    }

    #[test]
    fn trace_outcomes_map_to_record_outcomes() {
        let number: NhsNumber = "9434765919".parse().unwrap();
        assert_eq!(
            RecordOutcome::from_trace(TraceOutcome::Matched),
            RecordOutcome::Stored
        );
        assert_eq!(
            RecordOutcome::from_trace(TraceOutcome::NoMatch),
            RecordOutcome::NoMatch
        );
        assert_eq!(
            RecordOutcome::from_trace(TraceOutcome::Sensitive),
            RecordOutcome::SensitiveRefused
        );
        assert_eq!(
            RecordOutcome::from_trace(TraceOutcome::Superseded { new: number }),
            RecordOutcome::Superseded {
                stored_under: number
            }
        );
        assert_eq!(
            RecordOutcome::from_trace(TraceOutcome::Inactive),
            RecordOutcome::Inactive
        );
        assert!(!RecordOutcome::Inactive.is_stored());
    }

    #[test]
    fn codes_and_serde() {
        assert_eq!(superseded().code(), "SUPERSEDED");
        assert_eq!(
            serde_json::to_string(&superseded()).unwrap(),
            r#"{"outcome":"SUPERSEDED","stored_under":"9434765919"}"#
        );
        let invalid = RecordOutcome::Invalid {
            field: "start".into(),
            reason: "is required".into(),
        };
        assert_eq!(
            serde_json::to_string(&invalid).unwrap(),
            r#"{"outcome":"INVALID","field":"start","reason":"is required"}"#
        );
        for outcome in [
            FileOutcome::Success,
            FileOutcome::Partial,
            FileOutcome::Failed,
            FileOutcome::Corrupt,
            FileOutcome::DemographicsUnavailable,
        ] {
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{}\"", outcome.code())
            );
        }
    }
}
