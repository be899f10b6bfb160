//! How to reach the responsible authority: phone numbers and a secure e-mail address.

use serde::{Deserialize, Serialize};

use crate::text::text_newtype_conversions;
use crate::violation::{FieldViolations, ViolationCollector};

/// Bounds of a phone number, in characters (spaces and punctuation included).
const PHONE_LENGTH: std::ops::RangeInclusive<usize> = 7..=20;
/// The fewest digits a phone number has.
const MIN_PHONE_DIGITS: usize = 7;
/// The longest e-mail address (RFC 5321 path limit).
const MAX_EMAIL: usize = 254;

/// A telephone number a clinician can dial: digits, spaces, parentheses and a leading `+`.
///
/// Trimmed; 7 to 20 characters with at least 7 digits; `+` only as the first character.
/// Kept as written (spacing included), since it is shown to people.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct PhoneNumber(String);

/// Why a text is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    /// Nothing but whitespace.
    #[error("the phone number is empty")]
    Empty,
    /// A character other than a digit, space, parenthesis or leading `+`.
    #[error(
        "a phone number holds only digits, spaces, parentheses and a leading +, \
         found {character:?} at position {position}"
    )]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its position in the trimmed number, counted from 1.
        position: usize,
    },
    /// Fewer than 7 or more than 20 characters.
    #[error("a phone number has 7 to 20 characters, this one has {length}")]
    WrongLength {
        /// How many characters the trimmed number has.
        length: usize,
    },
    /// Fewer than 7 digits.
    #[error("a phone number has at least 7 digits, this one has {digits}")]
    TooFewDigits {
        /// How many digits it has.
        digits: usize,
    },
}

impl PhoneNumber {
    /// Parses a phone number (see the type's rules).
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let number = input.trim();
        if number.is_empty() {
            return Err(PhoneNumberError::Empty);
        }
        for (index, character) in number.chars().enumerate() {
            let allowed = matches!(character, '0'..='9' | ' ' | '(' | ')')
                || (character == '+' && index == 0);
            if !allowed {
                return Err(PhoneNumberError::InvalidCharacter {
                    character,
                    position: index + 1,
                });
            }
        }
        // Only ASCII remains, so bytes are characters.
        let length = number.len();
        if !PHONE_LENGTH.contains(&length) {
            return Err(PhoneNumberError::WrongLength { length });
        }
        let digits = number.bytes().filter(u8::is_ascii_digit).count();
        if digits < MIN_PHONE_DIGITS {
            return Err(PhoneNumberError::TooFewDigits { digits });
        }
        Ok(Self(number.to_owned()))
    }

    /// The number as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A secure e-mail address: one `@`, a non-empty local part, a domain with a dot inside it.
///
/// Trimmed; at most 254 characters; no whitespace or control characters. Deliberately not a
/// full RFC 5322 parser: it catches the mistakes people make, and delivery proves the rest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct EmailAddress(String);

/// Why a text is not an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailAddressError {
    /// Nothing but whitespace.
    #[error("the e-mail address is empty")]
    Empty,
    /// Longer than 254 characters.
    #[error("an e-mail address has at most 254 characters, this one has {length}")]
    TooLong {
        /// How many characters the trimmed address has.
        length: usize,
    },
    /// Whitespace or a control character inside the address.
    #[error(
        "an e-mail address holds no spaces or control characters, found one at position {position}"
    )]
    InvalidCharacter {
        /// Its position in the trimmed address, counted in characters from 1.
        position: usize,
    },
    /// Not exactly one `@`.
    #[error("an e-mail address has exactly one @, this one has {count}")]
    AtSigns {
        /// How many `@` the address has.
        count: usize,
    },
    /// Nothing before the `@`.
    #[error("an e-mail address has a name before the @")]
    EmptyLocalPart,
    /// The domain has no dot between two non-empty labels (`example.org`).
    #[error("an e-mail address's domain has a dot inside it, as in name@example.org")]
    InvalidDomain,
}

impl EmailAddress {
    /// Parses an e-mail address (see the type's rules).
    pub fn parse(input: &str) -> Result<Self, EmailAddressError> {
        let address = input.trim();
        if address.is_empty() {
            return Err(EmailAddressError::Empty);
        }
        if let Some(index) = address
            .chars()
            .position(|character| character.is_whitespace() || character.is_control())
        {
            return Err(EmailAddressError::InvalidCharacter {
                position: index + 1,
            });
        }
        let length = address.chars().count();
        if length > MAX_EMAIL {
            return Err(EmailAddressError::TooLong { length });
        }
        let count = address.matches('@').count();
        let Some((local, domain)) = address.split_once('@').filter(|_| count == 1) else {
            return Err(EmailAddressError::AtSigns { count });
        };
        if local.is_empty() {
            return Err(EmailAddressError::EmptyLocalPart);
        }
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if !domain_ok {
            return Err(EmailAddressError::InvalidDomain);
        }
        Ok(Self(address.to_owned()))
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How to reach the responsible authority about a child.
///
/// The emergency duty (out-of-hours) phone is mandatory: a child may turn up at an emergency
/// department at 3 a.m.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthorityContacts {
    /// The children's social care team in office hours.
    pub office_hours_phone: Option<PhoneNumber>,
    /// The emergency duty team, out of hours.
    pub emergency_duty_phone: PhoneNumber,
    /// A secure e-mail address for follow-up.
    pub secure_email: Option<EmailAddress>,
}

impl AuthorityContacts {
    /// Parses contacts given as text, reporting every problem at once under the field names
    /// `office_hours_phone`, `emergency_duty_phone` and `secure_email`.
    ///
    /// A blank optional field (`Some("")`, as protobuf sends an unset string) counts as
    /// absent; a blank emergency duty phone is a violation.
    pub fn parse(
        office_hours_phone: Option<&str>,
        emergency_duty_phone: &str,
        secure_email: Option<&str>,
    ) -> Result<Self, FieldViolations> {
        let mut violations = ViolationCollector::new();
        let office_hours_phone = present(office_hours_phone)
            .and_then(|phone| violations.check("office_hours_phone", PhoneNumber::parse(phone)));
        let emergency_duty_phone = violations.check(
            "emergency_duty_phone",
            PhoneNumber::parse(emergency_duty_phone),
        );
        let secure_email = present(secure_email)
            .and_then(|email| violations.check("secure_email", EmailAddress::parse(email)));
        violations.finish(emergency_duty_phone.map(|emergency_duty_phone| Self {
            office_hours_phone,
            emergency_duty_phone,
            secure_email,
        }))
    }
}

/// `None` for an absent or blank optional text.
fn present(text: Option<&str>) -> Option<&str> {
    text.filter(|text| !text.trim().is_empty())
}

text_newtype_conversions!(PhoneNumber: PhoneNumberError, EmailAddress: EmailAddressError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        for good in [
            "0113 222 4401",
            "+44 (0)113 222 4401",
            "1234567",
            " 01132224401 ",
        ] {
            assert!(PhoneNumber::parse(good).is_ok(), "{good}");
        }
        assert_eq!(PhoneNumber::parse(" "), Err(PhoneNumberError::Empty));
        assert_eq!(
            PhoneNumber::parse("0113-222-4401"),
            Err(PhoneNumberError::InvalidCharacter {
                character: '-',
                position: 5
            })
        );
        assert_eq!(
            PhoneNumber::parse("0113 +222 4401"),
            Err(PhoneNumberError::InvalidCharacter {
                character: '+',
                position: 6
            })
        );
        assert_eq!(
            PhoneNumber::parse("123456"),
            Err(PhoneNumberError::WrongLength { length: 6 })
        );
        assert_eq!(
            PhoneNumber::parse("+44 (0) 113 222 44011"),
            Err(PhoneNumberError::WrongLength { length: 21 })
        );
        assert_eq!(
            PhoneNumber::parse("(12) (34) 56"),
            Err(PhoneNumberError::TooFewDigits { digits: 6 })
        );
    }

    #[test]
    fn email_addresses() {
        for good in ["duty@leeds.gov.uk", " a@b.co ", "first.last+tag@x.nhs.net"] {
            assert!(EmailAddress::parse(good).is_ok(), "{good}");
        }
        assert_eq!(EmailAddress::parse(""), Err(EmailAddressError::Empty));
        assert_eq!(
            EmailAddress::parse("a b@c.d"),
            Err(EmailAddressError::InvalidCharacter { position: 2 })
        );
        assert_eq!(
            EmailAddress::parse("duty.leeds.gov.uk"),
            Err(EmailAddressError::AtSigns { count: 0 })
        );
        assert_eq!(
            EmailAddress::parse("a@b@c.d"),
            Err(EmailAddressError::AtSigns { count: 2 })
        );
        assert_eq!(
            EmailAddress::parse("@leeds.gov.uk"),
            Err(EmailAddressError::EmptyLocalPart)
        );
        for bad_domain in ["duty@leeds", "duty@.leeds", "duty@leeds.", "duty@leeds..uk"] {
            assert_eq!(
                EmailAddress::parse(bad_domain),
                Err(EmailAddressError::InvalidDomain),
                "{bad_domain}"
            );
        }
    }

    #[test]
    fn contacts_report_every_problem() {
        let violations = AuthorityContacts::parse(Some("12"), "", Some("nowhere")).unwrap_err();
        let fields: Vec<_> = violations
            .as_slice()
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["office_hours_phone", "emergency_duty_phone", "secure_email"]
        );
    }

    #[test]
    fn contacts_treat_blank_optionals_as_absent() {
        let contacts = AuthorityContacts::parse(Some(" "), "0113 222 4401", Some("")).unwrap();
        assert_eq!(contacts.office_hours_phone, None);
        assert_eq!(contacts.secure_email, None);
        assert_eq!(contacts.emergency_duty_phone.as_str(), "0113 222 4401");
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        assert!(serde_json::from_str::<PhoneNumber>("\"12\"").is_err());
        let contacts: AuthorityContacts = serde_json::from_str(
            r#"{"office_hours_phone":null,"emergency_duty_phone":"0113 222 4401","secure_email":"a@b.co"}"#,
        )
        .unwrap();
        assert_eq!(contacts.secure_email.unwrap().as_str(), "a@b.co");
    }
}
