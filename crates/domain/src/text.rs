//! Short free texts (names, references, site names): trimmed, bounded, printable.

/// Why a short free text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing but whitespace.
    #[error("must not be empty")]
    Empty,
    /// Longer than allowed once trimmed.
    #[error("must be at most {max} characters, this one has {length}")]
    TooLong {
        /// The most characters allowed.
        max: usize,
        /// How many characters the trimmed text has.
        length: usize,
    },
    /// A control character (line break, tab, NUL, ...) inside the text.
    #[error("must not contain control characters, found one at position {position}")]
    ControlCharacter {
        /// Its position in the trimmed text, counted in characters from 1.
        position: usize,
    },
}

/// Trims surrounding whitespace and checks that 1 to `max` characters remain, none of them a
/// control character.
pub(crate) fn printable(input: &str, max: usize) -> Result<String, TextError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if let Some(index) = text.chars().position(char::is_control) {
        return Err(TextError::ControlCharacter {
            position: index + 1,
        });
    }
    let length = text.chars().count();
    if length > max {
        return Err(TextError::TooLong { max, length });
    }
    Ok(text.to_owned())
}

/// `FromStr`, `Display`, and the `String` conversions serde uses, for the text newtypes.
macro_rules! text_newtype_conversions {
    ($($newtype:ident: $error:ty),* $(,)?) => {$(
        impl std::str::FromStr for $newtype {
            type Err = $error;

            fn from_str(input: &str) -> Result<Self, Self::Err> {
                Self::parse(input)
            }
        }

        impl TryFrom<String> for $newtype {
            type Error = $error;

            fn try_from(input: String) -> Result<Self, Self::Error> {
                Self::parse(&input)
            }
        }

        impl From<$newtype> for String {
            fn from(value: $newtype) -> Self {
                value.0
            }
        }

        impl std::fmt::Display for $newtype {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

pub(crate) use text_newtype_conversions;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        assert_eq!(printable("  Leeds  ", 10).as_deref(), Ok("Leeds"));
        assert_eq!(printable("  ", 10), Err(TextError::Empty));
        assert_eq!(
            printable("ééééé", 4),
            Err(TextError::TooLong { max: 4, length: 5 })
        );
        assert_eq!(printable("ééé", 3).as_deref(), Ok("ééé"));
        assert_eq!(
            printable("a\tb", 10),
            Err(TextError::ControlCharacter { position: 2 })
        );
    }
}
