//! The NHS number: the national identifier of a person in England and Wales.
//!
//! Ten digits, the last a Modulus 11 check digit over the first nine. Input may group the
//! digits with spaces or dashes ("943 476 5919", "943-476-5919"); only the ten digits are kept.
//!
//! NHS numbers must never appear in clear in logs, span attributes or metrics, so
//! [`NhsNumber`]'s `Debug` prints `NhsNumber(***)`. Only `Display`, [`NhsNumber::as_str`] and
//! serialisation reveal the digits: use them for answers and storage, never for telemetry
//! (the mesh provides a keyed hash for that).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How many digits an NHS number has, the check digit included.
const LENGTH: usize = 10;

/// Prefix of the range reserved for synthetic (test) NHS numbers.
const SYNTHETIC_PREFIX: &str = "999";

/// A valid NHS number: ten digits whose last is the Modulus 11 check digit of the first nine.
///
/// Parse it with [`NhsNumber::parse`] or [`str::parse`]; a value of this type always has a
/// correct check digit. `Display` writes the usual 3-3-4 grouping with spaces
/// (`943 476 5919`); [`NhsNumber::as_str`] gives the bare ten digits (`9434765919`), which is
/// also the serde form.
///
/// `Debug` is redacted (`NhsNumber(***)`) so that a stray `{:?}` in a log line or error
/// cannot leak the number: NHS numbers must never appear in clear in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber {
    /// The ten ASCII digits (`b'0'..=b'9'`).
    ascii: [u8; LENGTH],
}

/// Why a text is not an NHS number.
///
/// The messages never repeat the number itself, so they are safe to return to callers and to
/// log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    /// The input holds no digits at all (it is empty, or only spaces and dashes).
    #[error("the NHS number is empty")]
    Empty,
    /// The input holds a number of digits other than ten.
    #[error("an NHS number has 10 digits, this one has {digits}")]
    WrongLength {
        /// How many digits the input holds (spaces and dashes not counted).
        digits: usize,
    },
    /// The input holds a character that is neither a digit, a space nor a dash.
    #[error(
        "an NHS number holds only digits, spaces and dashes, \
         found {character:?} at position {position}"
    )]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its position in the input, counted in characters from 1.
        position: usize,
    },
    /// The last digit is not the check digit of the first nine.
    #[error("the NHS number's check digit is wrong (mistyped?)")]
    CheckDigitMismatch,
    /// The first nine digits give a check value of 10, so no NHS number starts with them.
    #[error("no NHS number starts with these nine digits (their check value is 10)")]
    CheckDigitTen,
}

impl NhsNumber {
    /// Parses an NHS number, accepting spaces and dashes anywhere between the digits.
    ///
    /// Checks, in this order: only digits, spaces and dashes (the first other character is
    /// reported with its position); at least one digit; exactly ten digits; the Modulus 11
    /// check digit.
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let mut ascii = [0u8; LENGTH];
        let mut digits = 0usize;
        for (index, character) in input.chars().enumerate() {
            match character {
                '0'..='9' => {
                    if let Some(slot) = ascii.get_mut(digits) {
                        // A char in '0'..='9' is one ASCII byte.
                        *slot = character as u8;
                    }
                    digits += 1;
                }
                ' ' | '-' => {}
                _ => {
                    return Err(NhsNumberError::InvalidCharacter {
                        character,
                        position: index + 1,
                    });
                }
            }
        }
        match digits {
            0 => Err(NhsNumberError::Empty),
            LENGTH => Self::from_ascii(ascii),
            _ => Err(NhsNumberError::WrongLength { digits }),
        }
    }

    /// Completes nine leading digits (values 0–9) with their check digit.
    ///
    /// `None` when a value is above 9 or when the check value would be 10 (no NHS number
    /// starts with these digits). Handy for synthetic data: every prefix starting `999` that
    /// yields a number gives a synthetic NHS number.
    pub fn from_prefix(prefix: &[u8; 9]) -> Option<Self> {
        let check = check_digit_for(prefix)?;
        let mut ascii = [0u8; LENGTH];
        for (slot, digit) in ascii.iter_mut().zip(prefix.iter().chain([&check])) {
            *slot = b'0' + digit;
        }
        Some(Self { ascii })
    }

    /// Checks the check digit of ten ASCII digits.
    fn from_ascii(ascii: [u8; LENGTH]) -> Result<Self, NhsNumberError> {
        let mut prefix = [0u8; 9];
        for (value, byte) in prefix.iter_mut().zip(&ascii) {
            *value = byte - b'0';
        }
        let given = ascii[LENGTH - 1] - b'0';
        match check_digit_for(&prefix) {
            None => Err(NhsNumberError::CheckDigitTen),
            Some(expected) if expected == given => Ok(Self { ascii }),
            Some(_) => Err(NhsNumberError::CheckDigitMismatch),
        }
    }

    /// The ten digits, without spaces (`"9434765919"`).
    ///
    /// This is the number in clear: never put it in logs, span attributes or metrics.
    pub fn as_str(&self) -> &str {
        // Built only from ASCII digits, so the fallback is never taken.
        std::str::from_utf8(&self.ascii).unwrap_or_default()
    }

    /// The values (0–9) of the ten digits, the check digit last.
    pub fn digits(&self) -> [u8; LENGTH] {
        self.ascii.map(|byte| byte - b'0')
    }

    /// The check digit (the tenth digit).
    pub fn check_digit(&self) -> u8 {
        self.ascii[LENGTH - 1] - b'0'
    }

    /// Whether the number lies in the range reserved for test data (it starts with `999`).
    ///
    /// Synthetic numbers are never issued to real people.
    pub fn is_synthetic(&self) -> bool {
        self.as_str().starts_with(SYNTHETIC_PREFIX)
    }
}

/// The Modulus 11 check digit of nine leading digits (values 0–9).
///
/// Multiplies the digits by the weights 10, 9, …, 2, sums, and takes `11 - (sum mod 11)`;
/// 11 becomes 0. `None` when the result is 10 (no NHS number starts with these digits) or
/// when a value is above 9.
pub fn check_digit_for(prefix: &[u8; 9]) -> Option<u8> {
    if prefix.iter().any(|&digit| digit > 9) {
        return None;
    }
    let sum: u32 = prefix
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        // 1..=9, so it fits a digit.
        check => u8::try_from(check).ok(),
    }
}

impl fmt::Display for NhsNumber {
    /// Writes the 3-3-4 grouping with spaces: `943 476 5919`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.as_str();
        write!(f, "{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
    }
}

impl fmt::Debug for NhsNumber {
    /// Redacted: NHS numbers must never appear in clear in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(***)")
    }
}

impl FromStr for NhsNumber {
    type Err = NhsNumberError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl TryFrom<&str> for NhsNumber {
    type Error = NhsNumberError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        Self::parse(input)
    }
}

impl Serialize for NhsNumber {
    /// Serialises as the ten digits, without spaces.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    /// Deserialises from a string through [`NhsNumber::parse`] (spaces and dashes accepted).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NhsNumberVisitor)
    }
}

/// Reads an NHS number from a serde string.
struct NhsNumberVisitor;

impl Visitor<'_> for NhsNumberVisitor {
    type Value = NhsNumber;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an NHS number: 10 digits, optionally grouped with spaces or dashes")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<NhsNumber, E> {
        NhsNumber::parse(value).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_well_known_example_in_every_grouping() {
        for input in [
            "9434765919",
            "943 476 5919",
            "943-476-5919",
            " 943 476-5919 ",
        ] {
            let number = NhsNumber::parse(input).unwrap();
            assert_eq!(number.as_str(), "9434765919");
        }
    }

    #[test]
    fn displays_three_three_four() {
        let number: NhsNumber = "9434765919".parse().unwrap();
        assert_eq!(number.to_string(), "943 476 5919");
    }

    #[test]
    fn debug_never_shows_the_digits() {
        let number: NhsNumber = "9434765919".parse().unwrap();
        let debug = format!("{number:?} {:?}", Some(number));
        assert!(!debug.contains("943"), "{debug}");
        assert_eq!(format!("{number:?}"), "NhsNumber(***)");
    }

    #[test]
    fn digits_and_check_digit() {
        let number: NhsNumber = "9434765919".parse().unwrap();
        assert_eq!(number.digits(), [9, 4, 3, 4, 7, 6, 5, 9, 1, 9]);
        assert_eq!(number.check_digit(), 9);
    }

    #[test]
    fn computes_check_digits() {
        // 9*10 + 4*9 + 3*8 + 4*7 + 7*6 + 6*5 + 5*4 + 9*3 + 1*2 = 299; 299 mod 11 = 2; 11-2 = 9.
        assert_eq!(check_digit_for(&[9, 4, 3, 4, 7, 6, 5, 9, 1]), Some(9));
        // Sum 0: 11 - 0 = 11, which becomes 0.
        assert_eq!(check_digit_for(&[0; 9]), Some(0));
        // 1*2 = 2: 11 - 2 = 9.
        assert_eq!(check_digit_for(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), Some(9));
        // 1*10 = 10: 11 - 10 = 1.
        assert_eq!(check_digit_for(&[1, 0, 0, 0, 0, 0, 0, 0, 0]), Some(1));
        // 4*3 = 12, 12 mod 11 = 1: 11 - 1 = 10, so no number starts with these digits.
        assert_eq!(check_digit_for(&[0, 0, 0, 0, 0, 0, 0, 4, 0]), None);
        assert_eq!(check_digit_for(&[0, 0, 0, 0, 0, 0, 0, 0, 10]), None);
    }

    #[test]
    fn from_prefix_completes_the_number() {
        let number = NhsNumber::from_prefix(&[9, 4, 3, 4, 7, 6, 5, 9, 1]).unwrap();
        assert_eq!(number.as_str(), "9434765919");
        assert_eq!(NhsNumber::from_prefix(&[0, 0, 0, 0, 0, 0, 0, 4, 0]), None);
    }

    #[test]
    fn reports_precise_errors() {
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberError::Empty));
        assert_eq!(NhsNumber::parse(" - "), Err(NhsNumberError::Empty));
        assert_eq!(
            NhsNumber::parse("943 476 591"),
            Err(NhsNumberError::WrongLength { digits: 9 })
        );
        assert_eq!(
            NhsNumber::parse("94347659190"),
            Err(NhsNumberError::WrongLength { digits: 11 })
        );
        assert_eq!(
            NhsNumber::parse("943 47x 5919"),
            Err(NhsNumberError::InvalidCharacter {
                character: 'x',
                position: 7
            })
        );
        assert_eq!(
            NhsNumber::parse("943\t476 5919"),
            Err(NhsNumberError::InvalidCharacter {
                character: '\t',
                position: 4
            })
        );
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(NhsNumberError::CheckDigitMismatch)
        );
        assert_eq!(
            NhsNumber::parse("0000000400"),
            Err(NhsNumberError::CheckDigitTen)
        );
    }

    #[test]
    fn error_messages_never_repeat_the_number() {
        for input in ["9434765918", "943 476 591", "0000000400"] {
            let message = NhsNumber::parse(input).unwrap_err().to_string();
            assert!(!message.contains("943"), "{message}");
            assert!(!message.contains("0000"), "{message}");
        }
    }

    #[test]
    fn synthetic_range() {
        let synthetic = NhsNumber::from_prefix(&[9, 9, 9, 0, 0, 0, 0, 0, 1]).unwrap();
        assert!(synthetic.is_synthetic());
        assert!(!"9434765919".parse::<NhsNumber>().unwrap().is_synthetic());
    }

    #[test]
    fn serde_uses_the_bare_digits_and_parses_on_the_way_in() {
        let number: NhsNumber = "9434765919".parse().unwrap();
        assert_eq!(serde_json::to_string(&number).unwrap(), "\"9434765919\"");
        let back: NhsNumber = serde_json::from_str("\"943 476 5919\"").unwrap();
        assert_eq!(back, number);
        let error = serde_json::from_str::<NhsNumber>("\"9434765918\"").unwrap_err();
        assert!(error.to_string().contains("check digit"), "{error}");
        assert!(serde_json::from_str::<NhsNumber>("9434765919").is_err());
    }
}
