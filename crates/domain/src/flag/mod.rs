//! Flags: what a local authority registers about a child, and how to reach it.
//!
//! A flag is submitted as a [`FlagDraft`] (what the caller sent), validated into
//! [`FlagDetails`] (every rule holds), and stored as a [`Flag`] (the details with a version
//! and who changed it when). The idempotency key of an upsert is the authority's code with
//! its [`CaseReference`].

mod authority;
mod contacts;
mod draft;
mod kind;

pub use authority::{CaseReference, LocalAuthority};
pub use contacts::{
    AuthorityContacts, EmailAddress, EmailAddressError, PhoneNumber, PhoneNumberError,
};
pub use draft::{FlagDraft, UCPP_DELIVERY_MONTHS_AFTER_START, UCPP_DELIVERY_MONTHS_BEFORE_START};
pub use kind::{FlagKind, FlagPlan, LookedAfterLegalBasis, UnknownCodeError};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::nhs_number::NhsNumber;
use crate::violation::FieldViolations;
use crate::visibility::{FlagState, VisibilityWindows, is_purged};

/// A valid flag's content, as the authority states it: every rule of [`FlagDraft`] holds.
///
/// Built only by [`FlagDraft::validate`] (or serde, which validates the same way), and
/// changed only through methods that keep the rules. Serialises as its [`FlagDraft`] form.
/// `Debug` redacts the NHS number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "FlagDraft", try_from = "FlagDraft")]
pub struct FlagDetails {
    subject: NhsNumber,
    plan: FlagPlan,
    start_date: Date,
    end_date: Option<Date>,
    delete_date: Option<Date>,
    authority: LocalAuthority,
    contacts: AuthorityContacts,
    case_reference: CaseReference,
}

impl FlagDetails {
    /// The NHS number the flag is held on (for an unborn child, the pregnant woman's).
    pub fn subject(&self) -> NhsNumber {
        self.subject
    }

    /// The kind of flag with its kind-specific data.
    pub fn plan(&self) -> &FlagPlan {
        &self.plan
    }

    /// The kind of flag.
    pub fn kind(&self) -> FlagKind {
        self.plan.kind()
    }

    /// The first day the plan applies.
    pub fn start_date(&self) -> Date {
        self.start_date
    }

    /// The first day the plan no longer applies, if known.
    pub fn end_date(&self) -> Option<Date> {
        self.end_date
    }

    /// The day the record is purged, if set.
    pub fn delete_date(&self) -> Option<Date> {
        self.delete_date
    }

    /// The responsible local authority.
    pub fn authority(&self) -> &LocalAuthority {
        &self.authority
    }

    /// How to reach the authority.
    pub fn contacts(&self) -> &AuthorityContacts {
        &self.contacts
    }

    /// The authority's own reference for the case.
    pub fn case_reference(&self) -> &CaseReference {
        &self.case_reference
    }

    /// The same flag ending on `end_date`, to be purged on `delete_date` if given; the date
    /// rules are checked again (violations name `end_date` and `delete_date`).
    pub fn ended(self, end_date: Date, delete_date: Option<Date>) -> Result<Self, FieldViolations> {
        FlagDraft {
            end_date: Some(end_date),
            delete_date,
            ..self.into()
        }
        .validate()
    }

    /// The same flag held on another NHS number, as when an upload's number was superseded
    /// and the flag is stored under the new one.
    pub fn with_subject(self, subject: NhsNumber) -> Self {
        Self { subject, ..self }
    }

    /// The flag's state on `today` under the national visibility rule.
    pub fn state(&self, windows: &VisibilityWindows, today: Date) -> FlagState {
        windows.state(self.start_date, self.end_date, self.kind(), today)
    }

    /// Whether the flag is purged on `today` (its delete date has come).
    pub fn is_purged(&self, today: Date) -> bool {
        is_purged(self.delete_date, today)
    }
}

/// A stored flag: its details, its version, and who changed it last and when.
///
/// The version starts at 1 and grows by one with every change; an upsert naming a stale
/// version is refused (optimistic concurrency). Serialises as the details' fields with
/// `version`, `updated_at` (RFC 3339) and `updated_by` beside them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flag {
    #[serde(flatten)]
    details: FlagDetails,
    version: u64,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    updated_by: String,
}

impl Flag {
    /// A stored flag at `version`, last changed at `updated_at` by `updated_by` (a user id).
    pub fn new(
        details: FlagDetails,
        version: u64,
        updated_at: OffsetDateTime,
        updated_by: impl Into<String>,
    ) -> Self {
        Self {
            details,
            version,
            updated_at,
            updated_by: updated_by.into(),
        }
    }

    /// The flag's content.
    pub fn details(&self) -> &FlagDetails {
        &self.details
    }

    /// The flag's content, owned (to change it and store a new version).
    pub fn into_details(self) -> FlagDetails {
        self.details
    }

    /// The version: 1 when first stored, one more with every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the flag was last changed.
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    /// Who last changed the flag (a user id).
    pub fn updated_by(&self) -> &str {
        &self.updated_by
    }

    /// The NHS number the flag is held on.
    pub fn subject(&self) -> NhsNumber {
        self.details.subject
    }

    /// The kind of flag.
    pub fn kind(&self) -> FlagKind {
        self.details.kind()
    }

    /// The flag's state on `today` under the national visibility rule.
    pub fn state(&self, windows: &VisibilityWindows, today: Date) -> FlagState {
        self.details.state(windows, today)
    }

    /// Whether the flag is purged on `today`.
    pub fn is_purged(&self, today: Date) -> bool {
        self.details.is_purged(today)
    }
}

#[cfg(test)]
mod tests;
