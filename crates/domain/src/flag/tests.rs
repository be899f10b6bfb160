//! Tests of flag validation, changes and serde.

use time::{Date, Month, OffsetDateTime};

use super::*;
use crate::visibility::FlagState;

fn date(year: i32, month: Month, day: u8) -> Date {
    Date::from_calendar_date(year, month, day).unwrap()
}

/// A valid child protection plan draft.
fn cpp() -> FlagDraft {
    FlagDraft {
        nhs_number: "943 476 5919".into(),
        kind: Some(FlagKind::ChildProtectionPlan),
        start_date: Some(date(2025, Month::March, 1)),
        authority_code: "e08000035".into(),
        authority_name: "Leeds City Council".into(),
        office_hours_phone: Some("0113 222 4401".into()),
        emergency_duty_phone: "0113 535 0600".into(),
        secure_email: Some("cp.duty@leeds.gov.uk".into()),
        case_reference: "CP/2025/0042".into(),
        ..FlagDraft::default()
    }
}

/// A valid unborn child protection plan draft starting on 1 March 2025.
fn ucpp(expected_delivery: Date) -> FlagDraft {
    FlagDraft {
        kind: Some(FlagKind::UnbornChildProtectionPlan),
        expected_delivery: Some(expected_delivery),
        ..cpp()
    }
}

fn fields(violations: &FieldViolations) -> Vec<&str> {
    violations
        .as_slice()
        .iter()
        .map(|violation| violation.field.as_str())
        .collect()
}

#[test]
fn a_valid_cpp() {
    let details = cpp().validate().unwrap();
    assert_eq!(details.subject().as_str(), "9434765919");
    assert_eq!(details.plan(), &FlagPlan::ChildProtectionPlan);
    assert_eq!(details.authority().code().as_str(), "E08000035");
    assert_eq!(
        details.contacts().emergency_duty_phone.as_str(),
        "0113 535 0600"
    );
    assert_eq!(details.case_reference().as_str(), "CP/2025/0042");
    assert_eq!(details.end_date(), None);
}

#[test]
fn a_valid_lac_carries_its_legal_basis() {
    let draft = FlagDraft {
        kind: Some(FlagKind::LookedAfterChild),
        legal_basis: Some(LookedAfterLegalBasis::Section20VoluntaryAgreement),
        ..cpp()
    };
    let details = draft.validate().unwrap();
    assert_eq!(
        details.plan(),
        &FlagPlan::LookedAfterChild {
            legal_basis: LookedAfterLegalBasis::Section20VoluntaryAgreement
        }
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let draft = FlagDraft {
        nhs_number: "9434765918".into(),
        kind: None,
        legal_basis: Some(LookedAfterLegalBasis::Section31CareOrder),
        start_date: None,
        delete_date: Some(date(2025, Month::May, 1)),
        authority_code: "E0".into(),
        office_hours_phone: Some("12".into()),
        emergency_duty_phone: String::new(),
        secure_email: Some("nobody".into()),
        case_reference: " ".into(),
        ..cpp()
    };
    let violations = draft.validate().unwrap_err();
    assert_eq!(
        fields(&violations),
        [
            "nhs_number",
            "legal_basis",
            "kind",
            "start_date",
            "delete_date",
            "authority_code",
            "office_hours_phone",
            "emergency_duty_phone",
            "secure_email",
            "case_reference",
        ]
    );
    // Nothing in the messages repeats the NHS number.
    assert!(!violations.to_string().contains("943"), "{violations}");
}

#[test]
fn a_bad_authority_name_is_reported_with_a_good_code() {
    let draft = FlagDraft {
        authority_name: " ".into(),
        ..cpp()
    };
    assert_eq!(fields(&draft.validate().unwrap_err()), ["authority_name"]);
}

#[test]
fn kind_specific_data_is_required_and_confined() {
    let lac_without_basis = FlagDraft {
        kind: Some(FlagKind::LookedAfterChild),
        ..cpp()
    };
    assert_eq!(
        fields(&lac_without_basis.validate().unwrap_err()),
        ["legal_basis"]
    );

    let ucpp_without_date = FlagDraft {
        kind: Some(FlagKind::UnbornChildProtectionPlan),
        ..cpp()
    };
    assert_eq!(
        fields(&ucpp_without_date.validate().unwrap_err()),
        ["expected_delivery"]
    );

    let cpp_with_date = FlagDraft {
        expected_delivery: Some(date(2025, Month::June, 1)),
        ..cpp()
    };
    assert_eq!(
        fields(&cpp_with_date.validate().unwrap_err()),
        ["expected_delivery"]
    );

    let ucpp_with_basis = FlagDraft {
        legal_basis: Some(LookedAfterLegalBasis::Section38InterimCareOrder),
        ..ucpp(date(2025, Month::June, 1))
    };
    assert_eq!(
        fields(&ucpp_with_basis.validate().unwrap_err()),
        ["legal_basis"]
    );
}

#[test]
fn date_order() {
    let start = date(2025, Month::March, 1);
    let ends_on_start = FlagDraft {
        end_date: Some(start),
        delete_date: Some(start),
        ..cpp()
    };
    assert!(ends_on_start.validate().is_ok());

    let ends_before_start = FlagDraft {
        end_date: Some(date(2025, Month::February, 28)),
        ..cpp()
    };
    assert_eq!(
        fields(&ends_before_start.validate().unwrap_err()),
        ["end_date"]
    );

    let deleted_without_end = FlagDraft {
        delete_date: Some(date(2026, Month::March, 1)),
        ..cpp()
    };
    let violations = deleted_without_end.validate().unwrap_err();
    assert_eq!(violations.as_slice()[0].description, "requires an end date");

    let deleted_before_end = FlagDraft {
        end_date: Some(date(2025, Month::June, 1)),
        delete_date: Some(date(2025, Month::May, 31)),
        ..cpp()
    };
    assert_eq!(
        fields(&deleted_before_end.validate().unwrap_err()),
        ["delete_date"]
    );
}

#[test]
fn expected_delivery_within_a_month_before_and_ten_months_after_the_start() {
    // The plan starts on 1 March 2025.
    for (delivery, valid) in [
        (date(2025, Month::January, 31), false),
        (date(2025, Month::February, 1), true),
        (date(2025, Month::March, 1), true),
        (date(2026, Month::January, 1), true),
        (date(2026, Month::January, 2), false),
    ] {
        let result = ucpp(delivery).validate();
        assert_eq!(result.is_ok(), valid, "{delivery}: {result:?}");
        if let Err(violations) = result {
            assert_eq!(fields(&violations), ["expected_delivery"]);
        }
    }
    // Month-end clamping: a plan starting 31 March allows delivery until 31 January, and from
    // 28 February (one month before 31 March, clamped).
    let from_end_of_march = |delivery| FlagDraft {
        start_date: Some(date(2025, Month::March, 31)),
        ..ucpp(delivery)
    };
    assert!(
        from_end_of_march(date(2025, Month::February, 28))
            .validate()
            .is_ok()
    );
    assert!(
        from_end_of_march(date(2025, Month::February, 27))
            .validate()
            .is_err()
    );
    assert!(
        from_end_of_march(date(2026, Month::January, 31))
            .validate()
            .is_ok()
    );
    assert!(
        from_end_of_march(date(2026, Month::February, 1))
            .validate()
            .is_err()
    );
}

#[test]
fn ending_a_flag_checks_the_dates_again() {
    let details = cpp().validate().unwrap();
    let end = date(2025, Month::September, 1);
    let ended = details
        .clone()
        .ended(end, Some(date(2030, Month::September, 1)))
        .unwrap();
    assert_eq!(ended.end_date(), Some(end));
    assert!(ended.is_purged(date(2030, Month::September, 1)));
    let early = details
        .ended(date(2025, Month::February, 1), None)
        .unwrap_err();
    assert_eq!(fields(&early), ["end_date"]);
}

#[test]
fn a_superseded_number_moves_the_flag() {
    let new_number = NhsNumber::from_prefix(&[9, 9, 9, 0, 0, 0, 0, 0, 1]).unwrap();
    let moved = cpp().validate().unwrap().with_subject(new_number);
    assert_eq!(moved.subject(), new_number);
}

#[test]
fn state_follows_the_visibility_rule() {
    let details = FlagDraft {
        end_date: Some(date(2025, Month::June, 1)),
        ..cpp()
    }
    .validate()
    .unwrap();
    let windows = VisibilityWindows::default();
    assert_eq!(
        details.state(&windows, date(2025, Month::May, 31)),
        FlagState::Current
    );
    assert_eq!(
        details.state(&windows, date(2025, Month::June, 1)),
        FlagState::RecentlyEnded
    );
    assert_eq!(
        details.state(&windows, date(2026, Month::June, 1)),
        FlagState::History
    );
}

#[test]
fn debug_never_shows_the_nhs_number() {
    let draft = cpp();
    let flag = Flag::new(
        draft.validate().unwrap(),
        1,
        OffsetDateTime::UNIX_EPOCH,
        "u-1",
    );
    for debug in [format!("{draft:?}"), format!("{flag:?}")] {
        assert!(!debug.contains("943"), "{debug}");
        assert!(!debug.contains("5919"), "{debug}");
    }
}

#[test]
fn serde_round_trips_and_validates() {
    let details = FlagDraft {
        kind: Some(FlagKind::LookedAfterChild),
        legal_basis: Some(LookedAfterLegalBasis::Section31CareOrder),
        end_date: Some(date(2025, Month::December, 31)),
        ..cpp()
    }
    .validate()
    .unwrap();
    let updated_at = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
    let flag = Flag::new(details, 3, updated_at, "user-7");
    let json = serde_json::to_value(&flag).unwrap();
    assert_eq!(json["nhs_number"], "9434765919");
    assert_eq!(json["kind"], "LAC");
    assert_eq!(json["legal_basis"], "S31");
    assert_eq!(json["start_date"], "2025-03-01");
    assert_eq!(json["end_date"], "2025-12-31");
    assert_eq!(json["version"], 3);
    assert_eq!(json["updated_at"], "2025-06-15T15:06:40Z");
    let back: Flag = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, flag);

    let mut broken = json;
    broken["end_date"] = "2025-01-01".into();
    let error = serde_json::from_value::<Flag>(broken).unwrap_err();
    assert!(error.to_string().contains("end_date"), "{error}");
}
