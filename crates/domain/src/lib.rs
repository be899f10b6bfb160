//! CP-IS domain: the pure types and rules of child-protection information sharing.
//!
//! No I/O, no async: every service maps its wire and storage types to these at its boundary
//! and applies the rules here, so that the rules exist once.
//!
//! - [`NhsNumber`]: ten digits with a Modulus 11 check digit; its `Debug` is redacted
//!   because NHS numbers never appear in clear in logs.
//! - [`OdsCode`]: the code of an organisation, health or local authority.
//! - [`flag`]: flag kinds ([`FlagKind`], with the looked-after [`LookedAfterLegalBasis`] and
//!   the unborn plan's expected delivery in [`FlagPlan`]), the responsible
//!   [`LocalAuthority`] and its [`AuthorityContacts`], and the [`FlagDraft`] →
//!   [`FlagDetails`] → [`Flag`] path of validation.
//! - [`visibility`]: the national rule of what a clinician sees ([`FlagState`],
//!   [`VisibilityWindows`]).
//! - [`retention`]: how long attendances are kept ([`RetentionPolicy`]).
//! - [`care_setting`]: where a child is seen, scheduled or unscheduled ([`CareSetting`]).
//! - [`person`] and [`upload`]: demographics trace answers and upload outcomes.
//! - [`FieldViolation`]: what is wrong with which input field, reported all at once, for
//!   `google.rpc.BadRequest`.

mod calendar;
pub mod care_setting;
pub mod flag;
pub mod nhs_number;
pub mod ods;
pub mod person;
pub mod retention;
mod text;
pub mod upload;
pub mod violation;
pub mod visibility;

pub use care_setting::{CareSetting, CareSettingType};
pub use flag::{
    AuthorityContacts, CaseReference, EmailAddress, EmailAddressError, Flag, FlagDetails,
    FlagDraft, FlagKind, FlagPlan, LocalAuthority, LookedAfterLegalBasis, PhoneNumber,
    PhoneNumberError, UnknownCodeError,
};
pub use nhs_number::{NhsNumber, NhsNumberError, check_digit_for};
pub use ods::{OdsCode, OdsCodeError};
pub use person::{PersonStatus, TraceOutcome};
pub use retention::RetentionPolicy;
pub use text::TextError;
pub use upload::{FileOutcome, RecordOutcome};
pub use violation::{FieldViolation, FieldViolations, ViolationCollector};
pub use visibility::{FlagState, VisibilityWindows, Window, WindowError, is_purged};
