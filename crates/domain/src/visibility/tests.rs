//! Table tests of the visibility rule at its boundaries.

use time::{Date, Month};

use super::*;
use FlagState::{Current, History, NotYetStarted, RecentlyEnded};

fn date(year: i32, month: Month, day: u8) -> Date {
    Date::from_calendar_date(year, month, day).unwrap()
}

fn next(day: Date) -> Date {
    day.next_day().unwrap()
}

fn previous(day: Date) -> Date {
    day.previous_day().unwrap()
}

/// Checks the state of one flag on each listed day.
fn assert_states(
    windows: &VisibilityWindows,
    kind: FlagKind,
    start: Date,
    end: Option<Date>,
    expected: &[(Date, FlagState)],
) {
    for &(today, state) in expected {
        assert_eq!(
            windows.state(start, end, kind, today),
            state,
            "{kind} from {start} to {end:?}, on {today}"
        );
    }
}

#[test]
fn defaults_match_the_design() {
    let windows = VisibilityWindows::default();
    assert_eq!(
        windows.window(FlagKind::ChildProtectionPlan),
        Window::Months(12)
    );
    assert_eq!(
        windows.window(FlagKind::LookedAfterChild),
        Window::Months(12)
    );
    assert_eq!(
        windows.window(FlagKind::UnbornChildProtectionPlan),
        Window::Days(28)
    );
}

#[test]
fn boundary_days_of_each_kind() {
    let windows = VisibilityWindows::default();
    let start = date(2024, Month::March, 10);
    let end = date(2025, Month::June, 15);
    // (kind, last day recently ended, first day of history)
    let cases = [
        (
            FlagKind::ChildProtectionPlan,
            date(2026, Month::June, 14),
            date(2026, Month::June, 15),
        ),
        (
            FlagKind::LookedAfterChild,
            date(2026, Month::June, 14),
            date(2026, Month::June, 15),
        ),
        (
            FlagKind::UnbornChildProtectionPlan,
            date(2025, Month::July, 12),
            date(2025, Month::July, 13),
        ),
    ];
    for (kind, last_recent, history_from) in cases {
        assert_eq!(windows.history_from(end, kind), Some(history_from));
        assert_states(
            &windows,
            kind,
            start,
            Some(end),
            &[
                (previous(start), NotYetStarted),
                (start, Current),
                (next(start), Current),
                (previous(end), Current),
                (end, RecentlyEnded),
                (next(end), RecentlyEnded),
                (last_recent, RecentlyEnded),
                (history_from, History),
                (next(history_from), History),
                (date(2040, Month::January, 1), History),
            ],
        );
    }
}

#[test]
fn an_open_flag_stays_current() {
    let windows = VisibilityWindows::default();
    let start = date(2025, Month::January, 1);
    for kind in FlagKind::ALL {
        assert_states(
            &windows,
            kind,
            start,
            None,
            &[
                (previous(start), NotYetStarted),
                (start, Current),
                (date(2099, Month::December, 31), Current),
            ],
        );
    }
}

#[test]
fn a_future_plan_is_not_yet_started_and_not_shown() {
    let windows = VisibilityWindows::default();
    let today = date(2025, Month::May, 1);
    let state = windows.state(
        next(today),
        Some(date(2025, Month::June, 1)),
        FlagKind::ChildProtectionPlan,
        today,
    );
    assert_eq!(state, NotYetStarted);
    assert!(!state.is_shown_in_check());
    assert!(Current.is_shown_in_check());
    assert!(RecentlyEnded.is_shown_in_check());
    assert!(!History.is_shown_in_check());
}

#[test]
fn a_flag_ending_on_its_start_day_is_never_current() {
    let windows = VisibilityWindows::default();
    let day = date(2025, Month::May, 1);
    let state = windows.state(day, Some(day), FlagKind::LookedAfterChild, day);
    assert_eq!(state, RecentlyEnded);
}

#[test]
fn month_windows_clamp_to_the_end_of_the_month() {
    let windows = VisibilityWindows {
        child_protection_plan: Window::Months(1),
        ..VisibilityWindows::default()
    };
    let start = date(2024, Month::December, 1);
    let kind = FlagKind::ChildProtectionPlan;
    // 31 January 2025 + 1 month = 28 February 2025 (clamped).
    let end = date(2025, Month::January, 31);
    assert_eq!(
        windows.history_from(end, kind),
        Some(date(2025, Month::February, 28))
    );
    assert_states(
        &windows,
        kind,
        start,
        Some(end),
        &[
            (date(2025, Month::January, 30), Current),
            (end, RecentlyEnded),
            (date(2025, Month::February, 27), RecentlyEnded),
            (date(2025, Month::February, 28), History),
        ],
    );
    // In a leap year the same end gives 29 February.
    let leap_end = date(2024, Month::January, 31);
    assert_eq!(
        windows.history_from(leap_end, kind),
        Some(date(2024, Month::February, 29))
    );
    // And 12 months from 29 February lands on 28 February.
    assert_eq!(
        VisibilityWindows::default().history_from(date(2024, Month::February, 29), kind),
        Some(date(2025, Month::February, 28))
    );
}

#[test]
fn a_zero_window_goes_straight_to_history() {
    let windows = VisibilityWindows {
        unborn_child_protection_plan: Window::Days(0),
        ..VisibilityWindows::default()
    };
    let end = date(2025, Month::May, 1);
    let state = windows.state(
        date(2025, Month::January, 1),
        Some(end),
        FlagKind::UnbornChildProtectionPlan,
        end,
    );
    assert_eq!(state, History);
}

#[test]
fn a_window_beyond_the_calendar_stays_recently_ended() {
    let windows = VisibilityWindows {
        child_protection_plan: Window::Months(u32::MAX),
        ..VisibilityWindows::default()
    };
    let end = date(2025, Month::May, 1);
    let state = windows.state(
        date(2025, Month::January, 1),
        Some(end),
        FlagKind::ChildProtectionPlan,
        date(2100, Month::January, 1),
    );
    assert_eq!(state, RecentlyEnded);
}

#[test]
fn purge_starts_on_the_delete_date() {
    let delete_on = date(2025, Month::May, 1);
    assert!(!is_purged(None, delete_on));
    assert!(!is_purged(Some(delete_on), previous(delete_on)));
    assert!(is_purged(Some(delete_on), delete_on));
    assert!(is_purged(Some(delete_on), next(delete_on)));
}

#[test]
fn windows_deserialise_with_defaults_and_aliases() {
    let windows: VisibilityWindows =
        serde_json::from_str(r#"{"lac":"6mo","unborn_child_protection_plan":"14 days"}"#).unwrap();
    assert_eq!(
        windows,
        VisibilityWindows {
            child_protection_plan: Window::Months(12),
            looked_after_child: Window::Months(6),
            unborn_child_protection_plan: Window::Days(14),
        }
    );
    assert_eq!(
        serde_json::from_str::<VisibilityWindows>("{}").unwrap(),
        VisibilityWindows::default()
    );
    assert!(serde_json::from_str::<VisibilityWindows>(r#"{"cp":"6mo"}"#).is_err());
    assert!(serde_json::from_str::<VisibilityWindows>(r#"{"cpp":"6 weeks"}"#).is_err());
}

#[test]
fn state_codes() {
    assert_eq!(
        serde_json::to_string(&RecentlyEnded).unwrap(),
        "\"RECENTLY_ENDED\""
    );
    for state in [NotYetStarted, Current, RecentlyEnded, History] {
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            format!("\"{}\"", state.code())
        );
    }
}
