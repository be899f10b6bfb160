//! A span of calendar time: a number of days or of calendar months.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::calendar::{add_days, add_months};

/// A span of calendar time, in days or calendar months.
///
/// Month arithmetic keeps the day of the month and clamps it to the end of a shorter month:
/// 31 January + 1 month is 28 February (29 in a leap year).
///
/// Text form (configuration files, environment variables, serde): a whole number, optional
/// spaces, then a unit — `d`, `day` or `days`; `mo`, `month` or `months` — in any letter
/// case: `"28 days"`, `"28d"`, `"12 months"`, `"12mo"`, `"1 month"`. Nothing else (no weeks,
/// no years, no `m`, which could be read as minutes). Written back as `"28 days"` or
/// `"12 months"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Window {
    /// A number of days.
    Days(u32),
    /// A number of calendar months.
    Months(u32),
}

/// Why a text is not a window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// It does not start with a whole number.
    #[error(
        "a window starts with a whole number of days or months, as in \"28 days\" or \"12 months\""
    )]
    MissingCount,
    /// The number does not fit in 32 bits.
    #[error("the window's number is too large")]
    CountTooLarge,
    /// The unit is not one of the accepted spellings.
    #[error("a window's unit is d, day, days, mo, month or months, as in \"28d\" or \"12mo\"")]
    UnknownUnit,
}

impl Window {
    /// The date `self` after `date`; `None` beyond the representable range.
    pub fn after(self, date: Date) -> Option<Date> {
        match self {
            Self::Days(days) => add_days(date, i64::from(days)),
            Self::Months(months) => add_months(date, i64::from(months)),
        }
    }

    /// The date `self` before `date`; `None` beyond the representable range.
    pub fn before(self, date: Date) -> Option<Date> {
        match self {
            Self::Days(days) => add_days(date, -i64::from(days)),
            Self::Months(months) => add_months(date, -i64::from(months)),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Days(1) => f.write_str("1 day"),
            Self::Days(days) => write!(f, "{days} days"),
            Self::Months(1) => f.write_str("1 month"),
            Self::Months(months) => write!(f, "{months} months"),
        }
    }
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let split = text
            .find(|character: char| !character.is_ascii_digit())
            .unwrap_or(text.len());
        let (count, unit) = text.split_at(split);
        if count.is_empty() {
            return Err(WindowError::MissingCount);
        }
        let count = count.parse().map_err(|_| WindowError::CountTooLarge)?;
        match unit.trim_start().to_ascii_lowercase().as_str() {
            "d" | "day" | "days" => Ok(Self::Days(count)),
            "mo" | "month" | "months" => Ok(Self::Months(count)),
            _ => Err(WindowError::UnknownUnit),
        }
    }
}

impl TryFrom<String> for Window {
    type Error = WindowError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Window> for String {
    fn from(window: Window) -> Self {
        window.to_string()
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
    fn parses_the_documented_spellings() {
        for (text, window) in [
            ("28 days", Window::Days(28)),
            ("28d", Window::Days(28)),
            ("1 day", Window::Days(1)),
            (" 0 DAYS ", Window::Days(0)),
            ("12 months", Window::Months(12)),
            ("12mo", Window::Months(12)),
            ("1 Month", Window::Months(1)),
        ] {
            assert_eq!(text.parse(), Ok(window), "{text}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!("days".parse::<Window>(), Err(WindowError::MissingCount));
        assert_eq!("-1 days".parse::<Window>(), Err(WindowError::MissingCount));
        assert_eq!("12".parse::<Window>(), Err(WindowError::UnknownUnit));
        assert_eq!("12m".parse::<Window>(), Err(WindowError::UnknownUnit));
        assert_eq!("2 weeks".parse::<Window>(), Err(WindowError::UnknownUnit));
        assert_eq!("1 year".parse::<Window>(), Err(WindowError::UnknownUnit));
        assert_eq!(
            "1.5 months".parse::<Window>(),
            Err(WindowError::UnknownUnit)
        );
        assert_eq!(
            "99999999999 days".parse::<Window>(),
            Err(WindowError::CountTooLarge)
        );
    }

    #[test]
    fn display_parses_back() {
        for window in [
            Window::Days(1),
            Window::Days(28),
            Window::Months(1),
            Window::Months(12),
        ] {
            assert_eq!(window.to_string().parse(), Ok(window));
        }
        assert_eq!(Window::Months(12).to_string(), "12 months");
    }

    #[test]
    fn calendar_arithmetic() {
        let end_of_january = date(2025, Month::January, 31);
        assert_eq!(
            Window::Months(1).after(end_of_january),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(
            Window::Days(28).after(end_of_january),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(
            Window::Months(1).before(date(2025, Month::March, 31)),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(
            Window::Days(1).before(date(2025, Month::March, 1)),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(Window::Months(u32::MAX).after(end_of_january), None);
    }

    #[test]
    fn serde_uses_the_text_form() {
        assert_eq!(
            serde_json::to_string(&Window::Days(28)).unwrap(),
            "\"28 days\""
        );
        assert_eq!(
            serde_json::from_str::<Window>("\"12mo\"").unwrap(),
            Window::Months(12)
        );
        assert!(serde_json::from_str::<Window>("\"12\"").is_err());
    }
}
