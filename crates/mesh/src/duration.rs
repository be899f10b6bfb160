//! Durations written as people write them in configuration: `250ms`, `5s`, `15m`, `1h`, `3d`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from and written to configuration as `<number><unit>`, with the units
/// `ms`, `s`, `m`, `h` and `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// A whole number of seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// A whole number of milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The standard library duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

/// A duration that is not `<number><unit>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration; write a whole number and a unit: 250ms, 5s, 15m, 1h or 3d")]
pub struct DurationError(String);

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| DurationError(s.to_owned()))?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| DurationError(s.to_owned()))?;
        let millis_per_unit: u64 = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(DurationError(s.to_owned())),
        };
        n.checked_mul(millis_per_unit)
            .map(|ms| Self(Duration::from_millis(ms)))
            .ok_or_else(|| DurationError(s.to_owned()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        const UNITS: [(u128, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in UNITS {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        for (text, ms) in [
            ("250ms", 250),
            ("5s", 5_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("3d", 259_200_000),
            (" 0s ", 0),
        ] {
            assert_eq!(
                text.parse::<HumanDuration>().unwrap().get(),
                Duration::from_millis(ms),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "",
            "5",
            "s",
            "5 weeks",
            "-1s",
            "1.5s",
            "99999999999999999999d",
        ] {
            assert!(text.parse::<HumanDuration>().is_err(), "{text}");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        for text in ["250ms", "5s", "15m", "1h", "3d", "0ms", "1500ms"] {
            assert_eq!(text.parse::<HumanDuration>().unwrap().to_string(), text);
        }
    }
}
