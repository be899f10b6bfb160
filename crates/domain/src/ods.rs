//! ODS codes: the identifiers of organisations (NHS trusts, GP practices, local authorities).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The shortest ODS code accepted.
const MIN_LENGTH: usize = 3;
/// The longest ODS code accepted.
const MAX_LENGTH: usize = 10;

/// An Organisation Data Service code, such as `RJ1` (a trust) or `E09000002` (a local
/// authority).
///
/// 3 to 10 ASCII letters and digits, stored in upper case. Parsing trims surrounding
/// whitespace and upper-cases, so `" rj1 "` and `"RJ1"` are the same code. Serialised as the
/// normalised code; deserialised through [`OdsCode::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

/// Why a text is not an ODS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdsCodeError {
    /// Nothing but whitespace.
    #[error("the organisation code is empty")]
    Empty,
    /// A character other than an ASCII letter or digit inside the code.
    #[error(
        "an organisation code holds only letters and digits, \
         found {character:?} at position {position}"
    )]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its position in the code once surrounding whitespace is trimmed, counted from 1.
        position: usize,
    },
    /// Fewer than 3 or more than 10 characters.
    #[error("an organisation code has 3 to 10 characters, this one has {length}")]
    WrongLength {
        /// How many characters the trimmed code has.
        length: usize,
    },
}

impl OdsCode {
    /// Parses an ODS code: trims surrounding whitespace, checks that what remains is 3 to 10
    /// ASCII letters and digits, and upper-cases it.
    pub fn parse(input: &str) -> Result<Self, OdsCodeError> {
        let code = input.trim();
        if code.is_empty() {
            return Err(OdsCodeError::Empty);
        }
        if let Some((index, character)) = code
            .chars()
            .enumerate()
            .find(|(_, character)| !character.is_ascii_alphanumeric())
        {
            return Err(OdsCodeError::InvalidCharacter {
                character,
                position: index + 1,
            });
        }
        // Only ASCII remains, so bytes are characters.
        let length = code.len();
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(OdsCodeError::WrongLength { length });
        }
        Ok(Self(code.to_ascii_uppercase()))
    }

    /// The normalised code (upper case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised code, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OdsCode {
    type Err = OdsCodeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl TryFrom<&str> for OdsCode {
    type Error = OdsCodeError;

    fn try_from(input: &str) -> Result<Self, Self::Error> {
        Self::parse(input)
    }
}

impl AsRef<str> for OdsCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for OdsCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OdsCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(OdsCodeVisitor)
    }
}

/// Reads an ODS code from a serde string.
struct OdsCodeVisitor;

impl Visitor<'_> for OdsCodeVisitor {
    type Value = OdsCode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an organisation (ODS) code: 3 to 10 letters and digits")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<OdsCode, E> {
        OdsCode::parse(value).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(OdsCode::parse(" rj1 ").unwrap().as_str(), "RJ1");
        assert_eq!(OdsCode::parse("E09000002").unwrap().as_str(), "E09000002");
        assert_eq!(OdsCode::parse("abcdefghij").unwrap().as_str(), "ABCDEFGHIJ");
    }

    #[test]
    fn reports_precise_errors() {
        assert_eq!(OdsCode::parse(""), Err(OdsCodeError::Empty));
        assert_eq!(OdsCode::parse(" \t"), Err(OdsCodeError::Empty));
        assert_eq!(
            OdsCode::parse("RJ"),
            Err(OdsCodeError::WrongLength { length: 2 })
        );
        assert_eq!(
            OdsCode::parse("ABCDEFGHIJK"),
            Err(OdsCodeError::WrongLength { length: 11 })
        );
        assert_eq!(
            OdsCode::parse(" R J1"),
            Err(OdsCodeError::InvalidCharacter {
                character: ' ',
                position: 2
            })
        );
        assert_eq!(
            OdsCode::parse("RJÉ1"),
            Err(OdsCodeError::InvalidCharacter {
                character: 'É',
                position: 3
            })
        );
    }

    #[test]
    fn serde_round_trip() {
        let code = OdsCode::parse("rj1").unwrap();
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"RJ1\"");
        assert_eq!(serde_json::from_str::<OdsCode>("\" rj1\"").unwrap(), code);
        assert!(serde_json::from_str::<OdsCode>("\"R\"").is_err());
    }
}
