//! Today's date in England (Europe/London), which the visibility rule is computed on.
//!
//! No time-zone database: the UK rule is fixed in law (Summer Time Order 2002): British
//! Summer Time runs from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last
//! Sunday of October. Tests pin the date.

use std::sync::{Arc, RwLock};

use time::{Date, Month, OffsetDateTime};

/// Where "today" comes from: the system clock, or a date a test pinned.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    pinned: Arc<RwLock<Option<Date>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock stuck at `date` (for tests); [`pin`](Self::pin) moves it.
    pub fn pinned(date: Date) -> Self {
        let clock = Self::default();
        clock.pin(date);
        clock
    }

    /// Pins the date.
    pub fn pin(&self, date: Date) {
        if let Ok(mut pinned) = self.pinned.write() {
            *pinned = Some(date);
        }
    }

    /// Today in England.
    pub fn today(&self) -> Date {
        match self.pinned.read().ok().and_then(|p| *p) {
            Some(date) => date,
            None => england_date(OffsetDateTime::now_utc()),
        }
    }
}

/// The calendar date in England at the instant `now`.
pub fn england_date(now: OffsetDateTime) -> Date {
    let utc = now.to_offset(time::UtcOffset::UTC);
    let year = utc.year();
    let starts = last_sunday(year, Month::March).map(|d| d.midnight().assume_utc() + HOUR);
    let ends = last_sunday(year, Month::October).map(|d| d.midnight().assume_utc() + HOUR);
    let summer = matches!((starts, ends), (Some(s), Some(e)) if s <= utc && utc < e);
    if summer {
        (utc + HOUR).date()
    } else {
        utc.date()
    }
}

const HOUR: time::Duration = time::Duration::HOUR;

fn last_sunday(year: i32, month: Month) -> Option<Date> {
    let last = Date::from_calendar_date(year, month, month.length(year)).ok()?;
    let back = i64::from(last.weekday().number_days_from_sunday());
    last.checked_sub(time::Duration::days(back))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u8, d: u8, h: u8, min: u8) -> OffsetDateTime {
        date(y, m, d).with_hms(h, min, 0).unwrap().assume_utc()
    }

    fn date(y: i32, m: u8, d: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap()
    }

    #[test]
    fn summer_time_moves_the_date_an_hour_early() {
        // 23:30 UTC in July is 00:30 the next day in London.
        assert_eq!(england_date(at(2026, 7, 10, 23, 30)), date(2026, 7, 11));
        // In winter London is on UTC.
        assert_eq!(england_date(at(2026, 1, 10, 23, 30)), date(2026, 1, 10));
        // The changes: 29 March 2026 01:00 UTC and 25 October 2026 01:00 UTC.
        assert_eq!(england_date(at(2026, 3, 29, 0, 59)), date(2026, 3, 29));
        assert_eq!(england_date(at(2026, 3, 29, 23, 30)), date(2026, 3, 30));
        assert_eq!(england_date(at(2026, 10, 24, 23, 30)), date(2026, 10, 25));
        assert_eq!(england_date(at(2026, 10, 25, 23, 30)), date(2026, 10, 25));
    }
}
