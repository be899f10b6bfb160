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

/// The page token resuming after the row with id `id`, for a list whose tokens start with
/// `kind` (`w1` webhooks, `d1` deliveries, `a1` attempts).
pub fn encode_id(kind: &str, id: uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// The id of a page token of `kind` this service gave, or None.
pub fn decode_id(kind: &str, token: &str) -> Option<uuid::Uuid> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    uuid::Uuid::parse_str(text.strip_prefix(kind)?.strip_prefix(':')?).ok()
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn id_tokens_round_trip_only_for_their_list() {
        let id = uuid::Uuid::now_v7();
        let token = super::encode_id("d1", id);
        assert_eq!(super::decode_id("d1", &token), Some(id));
        assert_eq!(super::decode_id("a1", &token), None);
        assert_eq!(super::decode_id("d1", &super::encode(3)), None);
    }
}
