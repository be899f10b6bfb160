//! Webhooks: which URLs are accepted, how secrets are kept, what a delivery carries, and
//! the small HTTPS client that POSTs it.

pub mod client;
mod json;
mod secret;

use std::net::IpAddr;

pub use json::notification_json;
pub use secret::{SealError, SecretSealer};

/// The shortest and longest secret accepted, in characters.
pub const SECRET_LENGTH: std::ops::RangeInclusive<usize> = 32..=256;

/// The longest URL accepted.
const MAX_URL: usize = 2048;

/// The header carrying the delivery id, the receiver's idempotency key.
pub const DELIVERY_ID_HEADER: &str = "CPIS-Delivery-Id";

/// Whether `host` (as a URL spells it) is a loopback address.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a webhook URL: absolute HTTPS, or plain HTTP to a loopback address (development
/// only); no credentials in it. The problem, for a field violation.
pub fn check_url(url: &str) -> Result<http::Uri, String> {
    if url.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL".to_owned())?;
    let authority = uri
        .authority()
        .ok_or_else(|| "must be an absolute https:// URL".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("must not carry credentials".to_owned());
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(authority.host()) => Ok(uri),
        Some("http") => {
            Err("must be https:// (plain http:// only to a loopback address)".to_owned())
        }
        _ => Err("must be an https:// URL".to_owned()),
    }
}

/// Checks a secret's length; the problem, for a field violation (never the secret).
pub fn check_secret(secret: &str) -> Result<(), String> {
    let length = secret.chars().count();
    if SECRET_LENGTH.contains(&length) {
        Ok(())
    } else {
        Err(format!(
            "must be {} to {} characters",
            SECRET_LENGTH.start(),
            SECRET_LENGTH.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://cms.example.gov.uk/hooks/cpis",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9000/",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://cms.example.gov.uk/hook",
            "http://10.0.0.1/hook",
            "ftp://example.com/",
            "/relative",
            "https://user:pass@example.com/",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_32_to_256_characters() {
        assert!(check_secret(&"s".repeat(31)).is_err());
        assert!(check_secret(&"s".repeat(32)).is_ok());
        assert!(check_secret(&"s".repeat(256)).is_ok());
        assert!(check_secret(&"s".repeat(257)).is_err());
    }
}
