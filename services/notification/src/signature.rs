//! Webhook signatures: how deliveries will be signed and how a receiver checks them.
//!
//! A delivery carries the header `CPIS-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`,
//! where each `v1` is HMAC-SHA256, keyed by one of the webhook's secrets, over the bytes
//! `<t>.<body>`. During a secret rotation there are two `v1` values, one per secret, so a
//! receiver holding either secret accepts the delivery. Receivers reject a timestamp too far
//! from their clock (replays). The same scheme as established webhook providers; the
//! reference verifier is [`verify`], and `docs/api/notification.md` has one in Python.

use ring::hmac;

/// The name of the signature header.
pub const HEADER: &str = "CPIS-Signature";

/// How far from the receiver's clock a timestamp may be, by default (5 minutes).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>...`.
    #[error("the signature header is malformed")]
    Malformed,
    /// The timestamp is too far from the receiver's clock.
    #[error("the signature's timestamp is stale")]
    Stale,
    /// No signature matches the secret.
    #[error("no signature matches")]
    Mismatch,
}

fn tag(secret: &[u8], timestamp: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The header value signing `body` at `timestamp` with each of `secrets` (the current one
/// first, then the previous one while a rotation overlaps).
pub fn sign(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex(tag(secret, timestamp, body).as_ref()));
    }
    header
}

/// Checks a delivery as a receiver holding `secret` does, at `now` (unix seconds),
/// accepting timestamps at most `tolerance_secs` away. The comparison is constant-time.
pub fn verify(
    header: &str,
    body: &[u8],
    secret: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => {
                signatures.push(unhex(value).ok_or(SignatureError::Malformed)?);
            }
            // Other schemes may be added later: ignored, not refused.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    if signatures
        .iter()
        .any(|signature| hmac::verify(&key, &message, signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"notificationId":"0193"}"#;
    const NOW: i64 = 1_760_000_000;

    #[test]
    fn a_signed_delivery_verifies_and_any_change_is_rejected() {
        let header = sign(&[b"current-secret"], NOW, BODY);
        assert!(header.starts_with("t=1760000000,v1="));
        assert_eq!(
            verify(&header, BODY, b"current-secret", NOW + 10, 300),
            Ok(())
        );
        assert_eq!(
            verify(&header, b"{}", b"current-secret", NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, b"another-secret", NOW, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replace("t=1760000000", "t=1760000100");
        assert_eq!(
            verify(&moved, BODY, b"current-secret", NOW + 100, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_rejected() {
        let header = sign(&[b"current-secret"], NOW, BODY);
        for now in [NOW + 301, NOW - 301] {
            assert_eq!(
                verify(&header, BODY, b"current-secret", now, 300),
                Err(SignatureError::Stale)
            );
        }
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let header = sign(&[b"new-secret", b"old-secret"], NOW, BODY);
        assert_eq!(header.matches("v1=").count(), 2);
        for secret in [&b"new-secret"[..], b"old-secret"] {
            assert_eq!(verify(&header, BODY, secret, NOW, 300), Ok(()));
        }
    }

    #[test]
    fn a_known_vector_matches_other_implementations() {
        // Computed independently: printf '1760000000.{"notificationId":"0193"}' |
        //   openssl dgst -sha256 -hmac current-secret
        assert_eq!(
            sign(&[b"current-secret"], NOW, BODY),
            "t=1760000000,v1=e3fbe0edb760aaf41fe51ec55e88c12fe7ec35c08ce2ab6f1f8d2b321da4db6b"
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for header in ["", "t=x,v1=00", "v1=00", "t=1", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(header, BODY, b"s", NOW, i64::MAX),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }
}
