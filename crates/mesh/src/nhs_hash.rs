//! A keyed hash that stands in for an NHS number in logs, span attributes and metrics.
//!
//! NHS numbers have ten digits, so a plain hash is reversed by trying every number; a secret
//! key (HMAC-SHA256) prevents that, while the same child still gets the same pseudonym in
//! every service that shares the key, so one child's trail can be followed without naming it.

use std::fmt;

use cpis_domain::NhsNumber;
use ring::hmac;

/// Bytes of the HMAC output kept in a pseudonym (128 bits: collisions are negligible).
const PSEUDONYM_BYTES: usize = 16;
/// The shortest key accepted.
pub const MIN_KEY_BYTES: usize = 32;

/// A key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsHashKeyError {
    /// Not hexadecimal.
    #[error("the key must be hexadecimal")]
    NotHex,
    /// Too short to resist guessing.
    #[error(
        "the key must be at least {MIN_KEY_BYTES} bytes ({MIN_KEY_BYTES} bytes = twice as many hex digits); it has {0} bytes"
    )]
    TooShort(usize),
}

/// Computes pseudonyms of NHS numbers.
#[derive(Clone)]
pub struct NhsHasher {
    key: hmac::Key,
}

impl fmt::Debug for NhsHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsHasher(<key redacted>)")
    }
}

impl NhsHasher {
    /// A hasher from raw key bytes.
    pub fn new(key: &[u8]) -> Result<Self, NhsHashKeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(NhsHashKeyError::TooShort(key.len()));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// A hasher from a hex-encoded key, as configured.
    pub fn from_hex(hex: &str) -> Result<Self, NhsHashKeyError> {
        Self::new(&decode_hex(hex.trim()).ok_or(NhsHashKeyError::NotHex)?)
    }

    /// The pseudonym of a number: `nhs:` and 32 hex digits.
    pub fn pseudonym(&self, number: &NhsNumber) -> String {
        let tag = hmac::sign(&self.key, number.as_str().as_bytes());
        let mut out = String::with_capacity(4 + PSEUDONYM_BYTES * 2);
        out.push_str("nhs:");
        for byte in &tag.as_ref()[..PSEUDONYM_BYTES] {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

/// Decodes hexadecimal text (either case).
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn same_number_same_pseudonym_and_never_the_number() {
        let hasher = NhsHasher::from_hex(KEY).unwrap();
        let number: NhsNumber = "943 476 5919".parse().unwrap();
        let a = hasher.pseudonym(&number);
        assert_eq!(a, hasher.pseudonym(&number));
        assert!(!a.contains("9434765919"));
        assert_eq!(a.len(), 4 + 32);
    }

    #[test]
    fn another_key_gives_another_pseudonym() {
        let number: NhsNumber = "9434765919".parse().unwrap();
        let other = KEY.replace("00", "11");
        assert_ne!(
            NhsHasher::from_hex(KEY).unwrap().pseudonym(&number),
            NhsHasher::from_hex(&other).unwrap().pseudonym(&number)
        );
    }

    #[test]
    fn weak_or_malformed_keys_are_refused() {
        assert_eq!(
            NhsHasher::from_hex("abcd").unwrap_err(),
            NhsHashKeyError::TooShort(2)
        );
        assert_eq!(
            NhsHasher::from_hex("xyz").unwrap_err(),
            NhsHashKeyError::NotHex
        );
    }
}
