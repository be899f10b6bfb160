//! The national visibility rule: which flags a clinician sees, and marked how.
//!
//! One rule, applied by the server, never left to each client. For a flag with start date
//! `S`, optional end date `E` and the window `W` of its kind, on the day `T`:
//!
//! | state | when | seen in a check |
//! |---|---|---|
//! | [`FlagState::NotYetStarted`] | `T < S` | no |
//! | [`FlagState::Current`] | `S <= T`, and `T < E` or no end | yes |
//! | [`FlagState::RecentlyEnded`] | `S <= T`, `E <= T < E + W` | yes, marked as ended |
//! | [`FlagState::History`] | `S <= T`, `E + W <= T` | only when history is asked for |
//!
//! Every interval is half-open: a flag is current from its start date through the day
//! before its end date (the end date is the first day the plan no longer applies), and
//! recently ended from its end date through the day before `E + W`. With the default 28-day
//! window, a UCPP ending on 1 March is recently ended 1–28 March and history from 29 March;
//! with 12 months, a CPP ending on 31 January 2025 is recently ended through 30 January 2026.
//! Month windows clamp to the end of a shorter month (31 January + 1 month = 28 February).
//!
//! A plan dated to start in the future is not yet in force: a clinician must not be told a
//! child *is* on a plan before the plan starts, so a check does not show it; the authority
//! still sees it in its own lists.
//!
//! A delete date purges the record: from that day on ([`is_purged`]) the flag no longer
//! exists, in any state.
//!
//! `today` is the calendar date in England (Europe/London), which the caller computes.

mod window;

pub use window::{Window, WindowError};

use serde::{Deserialize, Serialize};
use time::Date;

use crate::flag::FlagKind;

/// Where a flag stands on a given day under the visibility rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlagState {
    /// The start date is still to come: not in force, not shown in a check.
    NotYetStarted,
    /// In force: from the start date until the day before the end date.
    Current,
    /// Ended less than the kind's window ago: still shown in a check, marked as ended.
    RecentlyEnded,
    /// Ended longer ago than the window: shown only when history is asked for.
    History,
}

impl FlagState {
    /// Whether a check (an attendance at a care setting) shows the flag without being asked
    /// for history: current and recently ended flags only.
    pub fn is_shown_in_check(self) -> bool {
        matches!(self, Self::Current | Self::RecentlyEnded)
    }

    /// The stable code: `NOT_YET_STARTED`, `CURRENT`, `RECENTLY_ENDED` or `HISTORY`.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotYetStarted => "NOT_YET_STARTED",
            Self::Current => "CURRENT",
            Self::RecentlyEnded => "RECENTLY_ENDED",
            Self::History => "HISTORY",
        }
    }
}

/// How long an ended flag stays "recently ended", per kind.
///
/// Defaults: 12 months for child protection plans and looked-after children, 28 days for
/// unborn child protection plans. Deserialises from a map whose missing keys keep their
/// defaults, keyed by the kind's name or code:
/// `{ child_protection_plan = "12 months", lac = "6mo", ucpp = "28d" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisibilityWindows {
    /// The window of a child protection plan (CPP).
    #[serde(alias = "cpp")]
    pub child_protection_plan: Window,
    /// The window of a looked-after child flag (LAC).
    #[serde(alias = "lac")]
    pub looked_after_child: Window,
    /// The window of an unborn child protection plan (UCPP).
    #[serde(alias = "ucpp")]
    pub unborn_child_protection_plan: Window,
}

impl Default for VisibilityWindows {
    fn default() -> Self {
        Self {
            child_protection_plan: Window::Months(12),
            looked_after_child: Window::Months(12),
            unborn_child_protection_plan: Window::Days(28),
        }
    }
}

impl VisibilityWindows {
    /// The window of `kind`.
    pub fn window(&self, kind: FlagKind) -> Window {
        match kind {
            FlagKind::ChildProtectionPlan => self.child_protection_plan,
            FlagKind::LookedAfterChild => self.looked_after_child,
            FlagKind::UnbornChildProtectionPlan => self.unborn_child_protection_plan,
        }
    }

    /// The state on `today` of a flag of `kind` from `start` to `end` (see the module docs).
    ///
    /// Total: an end before the start (which validation refuses) simply counts from the end.
    /// When `end + window` lies beyond the calendar, the flag stays recently ended.
    pub fn state(&self, start: Date, end: Option<Date>, kind: FlagKind, today: Date) -> FlagState {
        if today < start {
            return FlagState::NotYetStarted;
        }
        let Some(end) = end else {
            return FlagState::Current;
        };
        if today < end {
            return FlagState::Current;
        }
        match self.window(kind).after(end) {
            Some(history_from) if history_from <= today => FlagState::History,
            _ => FlagState::RecentlyEnded,
        }
    }

    /// The first day a flag of `kind` ending on `end` is history (`end + window`); `None`
    /// beyond the calendar.
    pub fn history_from(&self, end: Date, kind: FlagKind) -> Option<Date> {
        self.window(kind).after(end)
    }
}

/// Whether a record with this delete date is purged on `today`: from the delete date on
/// (inclusive), it no longer exists. No delete date, never purged.
pub fn is_purged(delete_on: Option<Date>, today: Date) -> bool {
    delete_on.is_some_and(|delete_on| delete_on <= today)
}

#[cfg(test)]
mod tests;
