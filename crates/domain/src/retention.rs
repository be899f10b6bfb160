//! How long a child's attendances are kept: data minimisation.
//!
//! Attendances (accesses from care settings) are kept only for children the system holds a
//! flag for. A child's attendances are retained on a day while at least one of the child's
//! flags that is not purged is
//!
//! - not yet started, current or recently ended (see [`crate::visibility`]), or
//! - history, but ended less than the policy's `history` window ago (counted from the end
//!   date, so `T < E + history`).
//!
//! When no flag retains them, the attendances are deleted; the checks themselves stay in the
//! audit log. A check of a child with no flag stores no attendance at all. The history window
//! counts from the end date like the visibility window, so a history window shorter than a
//! kind's visibility window adds nothing for that kind.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::visibility::{FlagState, Window};

/// The attendance retention rule and its configurable window.
///
/// Deserialises from `{ history = "24 months" }` (missing keys keep the default) with the
/// [`Window`] text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// How long after a flag's end date the child's attendances are still kept (default 24
    /// months).
    pub history: Window,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            history: Window::Months(24),
        }
    }
}

impl RetentionPolicy {
    /// Whether a flag in `state`, ending on `end`, retains its child's attendances on `today`.
    ///
    /// A flag in history without an end date (which the visibility rule never produces)
    /// retains nothing; a retention end beyond the calendar retains.
    pub fn retains(&self, state: FlagState, end: Option<Date>, today: Date) -> bool {
        match state {
            FlagState::NotYetStarted | FlagState::Current | FlagState::RecentlyEnded => true,
            FlagState::History => end.is_some_and(|end| {
                self.history
                    .after(end)
                    .is_none_or(|deleted_from| today < deleted_from)
            }),
        }
    }

    /// Whether any of a child's flags, given as `(state, end)`, retains the child's
    /// attendances on `today`. No flags, nothing retained.
    pub fn retains_any(
        &self,
        flags: impl IntoIterator<Item = (FlagState, Option<Date>)>,
        today: Date,
    ) -> bool {
        flags
            .into_iter()
            .any(|(state, end)| self.retains(state, end, today))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Month;

    fn date(year: i32, month: Month, day: u8) -> Date {
        Date::from_calendar_date(year, month, day).unwrap()
    }

    #[test]
    fn live_flags_always_retain() {
        let policy = RetentionPolicy::default();
        let today = date(2025, Month::May, 1);
        for state in [
            FlagState::NotYetStarted,
            FlagState::Current,
            FlagState::RecentlyEnded,
        ] {
            assert!(policy.retains(state, None, today));
        }
    }

    #[test]
    fn history_retains_until_the_window_closes() {
        let policy = RetentionPolicy::default();
        let end = date(2024, Month::February, 29);
        // 29 February 2024 + 24 months = 28 February 2026 (clamped).
        let deleted_from = date(2026, Month::February, 28);
        assert!(policy.retains(
            FlagState::History,
            Some(end),
            date(2026, Month::February, 27)
        ));
        assert!(!policy.retains(FlagState::History, Some(end), deleted_from));
        assert!(!policy.retains(FlagState::History, None, deleted_from));
    }

    #[test]
    fn any_flag_retains() {
        let policy = RetentionPolicy {
            history: Window::Days(10),
        };
        let today = date(2025, Month::May, 20);
        let old = (FlagState::History, Some(date(2025, Month::May, 1)));
        let recent = (FlagState::History, Some(date(2025, Month::May, 15)));
        assert!(!policy.retains_any([old], today));
        assert!(policy.retains_any([old, recent], today));
        assert!(!policy.retains_any([], today));
    }

    #[test]
    fn deserialises_with_the_window_text_form() {
        let policy: RetentionPolicy = serde_json::from_str(r#"{"history":"36mo"}"#).unwrap();
        assert_eq!(policy.history, Window::Months(36));
        assert_eq!(
            serde_json::from_str::<RetentionPolicy>("{}").unwrap(),
            RetentionPolicy::default()
        );
    }
}
