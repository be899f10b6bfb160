//! Calendar arithmetic and the date text form shared by the domain types.

use time::{Date, Month};

/// Moves `date` by a whole number of calendar months (negative: back), keeping the day of the
/// month and clamping it to the last day of a shorter month (31 January + 1 month = 28 or 29
/// February). `None` beyond the representable range.
pub(crate) fn add_months(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).ok()
}

/// Moves `date` by a number of days (negative: back). `None` beyond the representable range.
pub(crate) fn add_days(date: Date, days: i64) -> Option<Date> {
    date.checked_add(time::Duration::days(days))
}

/// Serde for a [`Date`] as ISO 8601 calendar text, `YYYY-MM-DD` (years 0000 to 9999).
pub(crate) mod iso_date {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use time::{Date, Month};

    /// Writes `YYYY-MM-DD`.
    pub(crate) fn format(date: Date) -> Option<String> {
        (0..=9999).contains(&date.year()).then(|| {
            format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            )
        })
    }

    /// Reads exactly `YYYY-MM-DD`.
    pub(crate) fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
        if !shape_ok {
            return None;
        }
        let year = text.get(0..4)?.parse().ok()?;
        let month = Month::try_from(text.get(5..7)?.parse::<u8>().ok()?).ok()?;
        let day = text.get(8..10)?.parse().ok()?;
        Date::from_calendar_date(year, month, day).ok()
    }

    /// Serialises a date as `YYYY-MM-DD`.
    pub(crate) fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        let text = format(*date).ok_or_else(|| S::Error::custom("year outside 0000-9999"))?;
        serializer.serialize_str(&text)
    }

    /// Deserialises a date from `YYYY-MM-DD`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Date, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse(&text).ok_or_else(|| D::Error::custom("expected a date as YYYY-MM-DD"))
    }

    /// The same for an optional date (`null` or absent for `None`).
    pub(crate) mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::Date;

        /// Serialises `Some(date)` as `YYYY-MM-DD`, `None` as null.
        pub(crate) fn serialize<S: Serializer>(
            date: &Option<Date>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match date {
                Some(date) => super::serialize(date, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Deserialises null as `None`, `YYYY-MM-DD` as `Some`.
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Date>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Date);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(date)| date))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: Month, day: u8) -> Date {
        Date::from_calendar_date(year, month, day).unwrap()
    }

    #[test]
    fn months_clamp_to_the_end_of_shorter_months() {
        assert_eq!(
            add_months(date(2025, Month::January, 31), 1),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(
            add_months(date(2024, Month::January, 31), 1),
            Some(date(2024, Month::February, 29))
        );
        assert_eq!(
            add_months(date(2024, Month::February, 29), 12),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(
            add_months(date(2025, Month::March, 31), -1),
            Some(date(2025, Month::February, 28))
        );
        assert_eq!(
            add_months(date(2025, Month::November, 15), 3),
            Some(date(2026, Month::February, 15))
        );
        assert_eq!(
            add_months(date(2025, Month::January, 15), -13),
            Some(date(2023, Month::December, 15))
        );
        assert_eq!(
            add_months(date(2025, Month::January, 15), 0),
            Some(date(2025, Month::January, 15))
        );
        assert_eq!(
            add_months(date(2025, Month::January, 15), i64::from(u32::MAX)),
            None
        );
    }

    #[test]
    fn days_move_across_months() {
        assert_eq!(
            add_days(date(2025, Month::February, 28), 1),
            Some(date(2025, Month::March, 1))
        );
        assert_eq!(add_days(Date::MAX, 1), None);
    }

    #[test]
    fn iso_text_round_trips_and_is_strict() {
        let day = date(2025, Month::March, 7);
        assert_eq!(iso_date::format(day).as_deref(), Some("2025-03-07"));
        assert_eq!(iso_date::parse("2025-03-07"), Some(day));
        for bad in [
            "2025-3-07",
            "2025-02-30",
            "20250307",
            "2025-03-07 ",
            "+025-03-07",
            "2025/03/07",
        ] {
            assert_eq!(iso_date::parse(bad), None, "{bad}");
        }
    }
}
