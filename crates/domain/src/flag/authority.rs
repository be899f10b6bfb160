//! The responsible local authority and its own case reference.

use serde::{Deserialize, Serialize};

use crate::ods::OdsCode;
use crate::text::{TextError, printable, text_newtype_conversions};

/// The longest local authority name accepted.
const MAX_NAME: usize = 200;
/// The longest case reference accepted.
const MAX_CASE_REFERENCE: usize = 64;

/// The local authority responsible for a flag: its ODS code and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LocalAuthority {
    code: OdsCode,
    name: String,
}

impl LocalAuthority {
    /// The authority `code`, named `name` (trimmed; 1 to 200 characters, no control
    /// characters).
    pub fn new(code: OdsCode, name: &str) -> Result<Self, TextError> {
        Ok(Self {
            code,
            name: printable(name, MAX_NAME)?,
        })
    }

    /// The authority's ODS code.
    pub fn code(&self) -> &OdsCode {
        &self.code
    }

    /// The authority's name, as shown to clinicians.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The authority's own reference for a case: with the authority's code, the idempotency key
/// of an upsert.
///
/// Trimmed; 1 to 64 characters; no control characters. Compared exactly (case matters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CaseReference(String);

impl CaseReference {
    /// Parses a case reference (see the type's rules).
    pub fn parse(input: &str) -> Result<Self, TextError> {
        printable(input, MAX_CASE_REFERENCE).map(Self)
    }

    /// The reference as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype_conversions!(CaseReference: TextError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_references() {
        assert_eq!(
            CaseReference::parse(" CP/2025/001 ").unwrap().as_str(),
            "CP/2025/001"
        );
        assert_eq!(CaseReference::parse(""), Err(TextError::Empty));
        assert!(CaseReference::parse(&"x".repeat(64)).is_ok());
        assert_eq!(
            CaseReference::parse(&"x".repeat(65)),
            Err(TextError::TooLong {
                max: 64,
                length: 65
            })
        );
        assert_eq!(
            CaseReference::parse("a\nb"),
            Err(TextError::ControlCharacter { position: 2 })
        );
    }

    #[test]
    fn local_authority_names() {
        let code = OdsCode::parse("E08000035").unwrap();
        let leeds = LocalAuthority::new(code.clone(), " Leeds City Council ").unwrap();
        assert_eq!(leeds.name(), "Leeds City Council");
        assert_eq!(leeds.code(), &code);
        assert_eq!(LocalAuthority::new(code, " "), Err(TextError::Empty));
    }
}
