//! Cursors and page tokens: an inbox place, opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The cursor of inbox place `seq` (also the page token that resumes after it).
pub fn encode(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("n1:{seq}"))
}

/// The inbox place of a cursor this service gave, or None.
pub fn decode(cursor: &str) -> Option<i64> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("n1:")?
        .parse()
        .ok()
        .filter(|seq: &i64| *seq >= 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(super::decode(&super::encode(42)), Some(42));
        assert_eq!(super::decode("42"), None);
        assert_eq!(super::decode(&super::encode(-1)), None);
    }
}
