//! A flag as an authority submits it, and the rules that make it valid.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::Date;

use super::FlagDetails;
use super::authority::{CaseReference, LocalAuthority};
use super::contacts::AuthorityContacts;
use super::kind::{FlagKind, FlagPlan, LookedAfterLegalBasis};
use crate::calendar::{add_months, iso_date};
use crate::nhs_number::NhsNumber;
use crate::ods::OdsCode;
use crate::violation::{FieldViolations, ViolationCollector};

/// How many calendar months before its start an unborn child protection plan's expected
/// delivery date may lie.
pub const UCPP_DELIVERY_MONTHS_BEFORE_START: i64 = 1;
/// How many calendar months after its start an unborn child protection plan's expected
/// delivery date may lie.
pub const UCPP_DELIVERY_MONTHS_AFTER_START: i64 = 10;

/// A flag as submitted (an upsert, or one record of an upload), before validation.
///
/// Text fields hold what the caller sent; enums and dates hold what the wire format already
/// decoded (`None` for absent or unspecified). [`FlagDraft::validate`] checks everything and
/// reports every problem at once; each [`crate::FieldViolation`] names the field by its name
/// in this struct (`nhs_number`, `kind`, `legal_basis`, `expected_delivery`, `start_date`,
/// `end_date`, `delete_date`, `authority_code`, `authority_name`, `office_hours_phone`,
/// `emergency_duty_phone`, `secure_email`, `case_reference`), so the gRPC layer can map them
/// to its own field paths.
///
/// The rules:
/// - the NHS number, ODS code, phones, e-mail, name and case reference are valid (see their
///   types); the emergency duty phone is mandatory, the other contacts optional (blank counts
///   as absent);
/// - the kind and start date are present;
/// - a legal basis is given for a looked-after child flag and for no other kind; an expected
///   delivery date is given for an unborn child protection plan and for no other kind (nothing
///   else about an unborn child is carried);
/// - the end date, if any, is on or after the start date;
/// - a delete date requires an end date and is on or after it;
/// - an unborn child protection plan's expected delivery date lies between one calendar month
///   before and ten calendar months after the start date, both inclusive (month-end clamped):
///   a pregnancy lasts about nine months (40 weeks), so a plan made during it expects the
///   birth within ten months, and a plan may be registered a little after the expected date
///   while the baby is late (up to 42 weeks).
///
/// `Debug` redacts the NHS number.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlagDraft {
    /// The subject's NHS number (for an unborn child, the pregnant woman's).
    pub nhs_number: String,
    /// The kind of flag.
    pub kind: Option<FlagKind>,
    /// For a looked-after child: the legal basis.
    pub legal_basis: Option<LookedAfterLegalBasis>,
    /// For an unborn child protection plan: the expected date of delivery.
    #[serde(with = "iso_date::option")]
    pub expected_delivery: Option<Date>,
    /// The first day the plan applies.
    #[serde(with = "iso_date::option")]
    pub start_date: Option<Date>,
    /// The first day the plan no longer applies, if it has ended or its end is known.
    #[serde(with = "iso_date::option")]
    pub end_date: Option<Date>,
    /// The day the record is to be purged, if any.
    #[serde(with = "iso_date::option")]
    pub delete_date: Option<Date>,
    /// The responsible local authority's ODS code.
    pub authority_code: String,
    /// The responsible local authority's name.
    pub authority_name: String,
    /// The authority's office-hours phone.
    pub office_hours_phone: Option<String>,
    /// The authority's emergency duty (out-of-hours) phone: mandatory.
    pub emergency_duty_phone: String,
    /// The authority's secure e-mail address.
    pub secure_email: Option<String>,
    /// The authority's own reference for the case.
    pub case_reference: String,
}

impl FlagDraft {
    /// Checks every rule (see the type's docs) and gives the valid flag, or every violation.
    pub fn validate(&self) -> Result<FlagDetails, FieldViolations> {
        let mut violations = ViolationCollector::new();

        let subject = violations.check("nhs_number", NhsNumber::parse(&self.nhs_number));
        let plan = self.plan(&mut violations);
        let start_date = self.start_date;
        if start_date.is_none() {
            violations.add("start_date", "is required");
        }
        self.check_dates(&mut violations);
        let authority = violations
            .check("authority_code", OdsCode::parse(&self.authority_code))
            .and_then(|code| {
                violations.check(
                    "authority_name",
                    LocalAuthority::new(code, &self.authority_name),
                )
            });
        let contacts = violations.check_all(AuthorityContacts::parse(
            self.office_hours_phone.as_deref(),
            &self.emergency_duty_phone,
            self.secure_email.as_deref(),
        ));
        let case_reference =
            violations.check("case_reference", CaseReference::parse(&self.case_reference));

        let details = match (
            subject,
            plan,
            start_date,
            authority,
            contacts,
            case_reference,
        ) {
            (
                Some(subject),
                Some(plan),
                Some(start_date),
                Some(authority),
                Some(contacts),
                Some(case_reference),
            ) => Some(FlagDetails {
                subject,
                plan,
                start_date,
                end_date: self.end_date,
                delete_date: self.delete_date,
                authority,
                contacts,
                case_reference,
            }),
            _ => None,
        };
        violations.finish(details)
    }

    /// The kind with its kind-specific data, recording what is missing or misplaced.
    fn plan(&self, violations: &mut ViolationCollector) -> Option<FlagPlan> {
        let is_lac = self.kind == Some(FlagKind::LookedAfterChild);
        let is_ucpp = self.kind == Some(FlagKind::UnbornChildProtectionPlan);
        if self.legal_basis.is_some() && !is_lac {
            violations.add(
                "legal_basis",
                "applies only to a looked-after child (LAC) flag",
            );
        }
        if self.expected_delivery.is_some() && !is_ucpp {
            violations.add(
                "expected_delivery",
                "applies only to an unborn child protection plan (UCPP)",
            );
        }
        let Some(kind) = self.kind else {
            violations.add("kind", "is required (CPP, LAC or UCPP)");
            return None;
        };
        match kind {
            FlagKind::ChildProtectionPlan => Some(FlagPlan::ChildProtectionPlan),
            FlagKind::LookedAfterChild => match self.legal_basis {
                Some(legal_basis) => Some(FlagPlan::LookedAfterChild { legal_basis }),
                None => {
                    violations.add(
                        "legal_basis",
                        "is required for a looked-after child (LAC) flag (S31, S38 or S20)",
                    );
                    None
                }
            },
            FlagKind::UnbornChildProtectionPlan => match self.expected_delivery {
                Some(expected_delivery) => {
                    Some(FlagPlan::UnbornChildProtectionPlan { expected_delivery })
                }
                None => {
                    violations.add(
                        "expected_delivery",
                        "is required for an unborn child protection plan (UCPP)",
                    );
                    None
                }
            },
        }
    }

    /// The rules between the dates.
    fn check_dates(&self, violations: &mut ViolationCollector) {
        if let (Some(start), Some(end)) = (self.start_date, self.end_date)
            && end < start
        {
            violations.add("end_date", "must not be before the start date");
        }
        match (self.end_date, self.delete_date) {
            (None, Some(_)) => violations.add("delete_date", "requires an end date"),
            (Some(end), Some(delete)) if delete < end => {
                violations.add("delete_date", "must not be before the end date");
            }
            _ => {}
        }
        if let (Some(FlagKind::UnbornChildProtectionPlan), Some(start), Some(delivery)) =
            (self.kind, self.start_date, self.expected_delivery)
            && !delivery_in_range(start, delivery)
        {
            violations.add(
                "expected_delivery",
                format!(
                    "must lie between {UCPP_DELIVERY_MONTHS_BEFORE_START} month before and \
                     {UCPP_DELIVERY_MONTHS_AFTER_START} months after the start date"
                ),
            );
        }
    }
}

/// Whether an expected delivery date is plausible for a plan starting on `start`.
fn delivery_in_range(start: Date, delivery: Date) -> bool {
    let earliest = add_months(start, -UCPP_DELIVERY_MONTHS_BEFORE_START);
    let latest = add_months(start, UCPP_DELIVERY_MONTHS_AFTER_START);
    earliest.is_none_or(|earliest| earliest <= delivery)
        && latest.is_none_or(|latest| delivery <= latest)
}

impl fmt::Debug for FlagDraft {
    /// Redacts the NHS number, which must never appear in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagDraft")
            .field("nhs_number", &"***")
            .field("kind", &self.kind)
            .field("legal_basis", &self.legal_basis)
            .field("expected_delivery", &self.expected_delivery)
            .field("start_date", &self.start_date)
            .field("end_date", &self.end_date)
            .field("delete_date", &self.delete_date)
            .field("authority_code", &self.authority_code)
            .field("authority_name", &self.authority_name)
            .field("office_hours_phone", &self.office_hours_phone)
            .field("emergency_duty_phone", &self.emergency_duty_phone)
            .field("secure_email", &self.secure_email)
            .field("case_reference", &self.case_reference)
            .finish()
    }
}

impl From<FlagDetails> for FlagDraft {
    fn from(details: FlagDetails) -> Self {
        let contacts = details.contacts;
        Self {
            nhs_number: details.subject.as_str().to_owned(),
            kind: Some(details.plan.kind()),
            legal_basis: details.plan.legal_basis(),
            expected_delivery: details.plan.expected_delivery(),
            start_date: Some(details.start_date),
            end_date: details.end_date,
            delete_date: details.delete_date,
            authority_code: details.authority.code().as_str().to_owned(),
            authority_name: details.authority.name().to_owned(),
            office_hours_phone: contacts.office_hours_phone.map(String::from),
            emergency_duty_phone: contacts.emergency_duty_phone.into(),
            secure_email: contacts.secure_email.map(String::from),
            case_reference: details.case_reference.into(),
        }
    }
}

impl TryFrom<FlagDraft> for FlagDetails {
    type Error = FieldViolations;

    fn try_from(draft: FlagDraft) -> Result<Self, Self::Error> {
        draft.validate()
    }
}
