//! Wire messages ↔ domain types, at the boundary.

use cpis_domain::{
    AuthorityContacts, FieldViolation, FlagDraft, FlagKind, FlagState, LookedAfterLegalBasis,
};
use cpis_proto::common;
use cpis_proto::flags::FlagRecord;
use time::{Date, Month};

use crate::audit::timestamp;
use crate::store::StoredFlag;

/// A wire date, or what is wrong with it.
pub(crate) fn date(field: &str, date: &common::Date) -> Result<Date, FieldViolation> {
    let month = u8::try_from(date.month)
        .ok()
        .and_then(|m| Month::try_from(m).ok());
    let day = u8::try_from(date.day).ok();
    match (month, day) {
        (Some(month), Some(day)) => Date::from_calendar_date(date.year, month, day)
            .map_err(|_| FieldViolation::new(field, "is not a calendar date")),
        _ => Err(FieldViolation::new(field, "is not a calendar date")),
    }
}

/// An optional wire date.
pub(crate) fn optional_date(
    field: &str,
    value: Option<&common::Date>,
    violations: &mut Vec<FieldViolation>,
) -> Option<Date> {
    value.and_then(|d| match date(field, d) {
        Ok(d) => Some(d),
        Err(v) => {
            violations.push(v);
            None
        }
    })
}

/// A date on the wire.
pub(crate) fn wire_date(date: Date) -> common::Date {
    common::Date {
        year: date.year(),
        month: i32::from(u8::from(date.month())),
        day: i32::from(date.day()),
    }
}

/// A wire kind (unspecified: `None`).
pub(crate) fn kind(value: i32) -> Result<Option<FlagKind>, ()> {
    match common::FlagKind::try_from(value) {
        Ok(common::FlagKind::Unspecified) => Ok(None),
        Ok(common::FlagKind::ChildProtectionPlan) => Ok(Some(FlagKind::ChildProtectionPlan)),
        Ok(common::FlagKind::LookedAfterChild) => Ok(Some(FlagKind::LookedAfterChild)),
        Ok(common::FlagKind::UnbornChildProtectionPlan) => {
            Ok(Some(FlagKind::UnbornChildProtectionPlan))
        }
        Err(_) => Err(()),
    }
}

fn wire_kind(kind: FlagKind) -> common::FlagKind {
    match kind {
        FlagKind::ChildProtectionPlan => common::FlagKind::ChildProtectionPlan,
        FlagKind::LookedAfterChild => common::FlagKind::LookedAfterChild,
        FlagKind::UnbornChildProtectionPlan => common::FlagKind::UnbornChildProtectionPlan,
    }
}

fn legal_basis(value: i32) -> Result<Option<LookedAfterLegalBasis>, ()> {
    use common::LookedAfterLegalBasis as Wire;
    match Wire::try_from(value) {
        Ok(Wire::Unspecified) => Ok(None),
        Ok(Wire::Section31CareOrder) => Ok(Some(LookedAfterLegalBasis::Section31CareOrder)),
        Ok(Wire::Section38InterimCareOrder) => {
            Ok(Some(LookedAfterLegalBasis::Section38InterimCareOrder))
        }
        Ok(Wire::Section20VoluntaryAgreement) => {
            Ok(Some(LookedAfterLegalBasis::Section20VoluntaryAgreement))
        }
        Err(_) => Err(()),
    }
}

fn wire_legal_basis(basis: LookedAfterLegalBasis) -> common::LookedAfterLegalBasis {
    use common::LookedAfterLegalBasis as Wire;
    match basis {
        LookedAfterLegalBasis::Section31CareOrder => Wire::Section31CareOrder,
        LookedAfterLegalBasis::Section38InterimCareOrder => Wire::Section38InterimCareOrder,
        LookedAfterLegalBasis::Section20VoluntaryAgreement => Wire::Section20VoluntaryAgreement,
    }
}

/// A state on the wire (not yet started has no wire state: unspecified).
pub(crate) fn wire_state(state: FlagState) -> common::FlagState {
    match state {
        FlagState::NotYetStarted => common::FlagState::Unspecified,
        FlagState::Current => common::FlagState::Current,
        FlagState::RecentlyEnded => common::FlagState::RecentlyEnded,
        FlagState::History => common::FlagState::History,
    }
}

/// The draft of a record with the authority and contacts it is sent with; wire problems
/// the draft cannot hold (a date that is no date, an unknown enum value) go to
/// `violations`, named by the domain's field names.
pub(crate) fn draft(
    authority: Option<&common::LocalAuthority>,
    contacts: Option<&common::AuthorityContacts>,
    record: &FlagRecord,
    violations: &mut Vec<FieldViolation>,
) -> FlagDraft {
    let kind = kind(record.kind).unwrap_or_else(|()| {
        violations.push(FieldViolation::new("kind", "is not a known kind"));
        None
    });
    let legal_basis = legal_basis(record.looked_after_legal_basis).unwrap_or_else(|()| {
        violations.push(FieldViolation::new(
            "legal_basis",
            "is not a known legal basis",
        ));
        None
    });
    let blank_is_none = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
    let contacts = contacts.cloned().unwrap_or_default();
    let authority = authority.cloned().unwrap_or_default();
    FlagDraft {
        nhs_number: record
            .nhs_number
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_default(),
        kind,
        legal_basis,
        expected_delivery: optional_date(
            "expected_delivery",
            record.expected_delivery_date.as_ref(),
            violations,
        ),
        start_date: optional_date("start_date", record.start_date.as_ref(), violations),
        end_date: optional_date("end_date", record.end_date.as_ref(), violations),
        delete_date: optional_date("delete_date", record.delete_date.as_ref(), violations),
        authority_code: authority.code.map(|c| c.value).unwrap_or_default(),
        authority_name: authority.name,
        office_hours_phone: blank_is_none(&contacts.office_hours_phone),
        emergency_duty_phone: contacts.emergency_duty_phone,
        secure_email: blank_is_none(&contacts.secure_email),
        case_reference: record.case_reference.clone(),
    }
}

/// A stored flag on the wire, in `state`.
pub(crate) fn wire_flag(stored: &StoredFlag, state: Option<FlagState>) -> common::Flag {
    let flag = &stored.flag;
    let details = flag.details();
    let contacts: &AuthorityContacts = details.contacts();
    common::Flag {
        flag_id: stored.flag_id.clone(),
        nhs_number: Some(common::NhsNumber {
            value: flag.subject().as_str().to_owned(),
        }),
        kind: wire_kind(flag.kind()) as i32,
        looked_after_legal_basis: details
            .plan()
            .legal_basis()
            .map_or(0, |b| wire_legal_basis(b) as i32),
        expected_delivery_date: details.plan().expected_delivery().map(wire_date),
        start_date: Some(wire_date(details.start_date())),
        end_date: details.end_date().map(wire_date),
        delete_date: details.delete_date().map(wire_date),
        state: state.map_or(0, |s| wire_state(s) as i32),
        authority: Some(common::LocalAuthority {
            code: Some(common::OdsCode {
                value: details.authority().code().as_str().to_owned(),
            }),
            name: details.authority().name().to_owned(),
        }),
        contacts: Some(common::AuthorityContacts {
            office_hours_phone: contacts
                .office_hours_phone
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            emergency_duty_phone: contacts.emergency_duty_phone.as_str().to_owned(),
            secure_email: contacts
                .secure_email
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default(),
        }),
        case_reference: details.case_reference().as_str().to_owned(),
        version: i64::try_from(flag.version()).unwrap_or(i64::MAX),
        update_time: Some(timestamp(flag.updated_at())),
        updated_by: flag.updated_by().to_owned(),
    }
}
