//! Webhook secrets at rest: sealed with ChaCha20-Poly1305 under
//! `notification.webhook_secret_key` (the webhook id as associated data, so a sealed secret
//! cannot be moved to another webhook), so a database reader cannot sign deliveries.
//! Without a key they are stored as they are, marked so (one machine, development).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// The first byte of a stored secret: how it is kept.
const UNSEALED: u8 = 0;
const SEALED_V1: u8 = 1;

/// Why a secret cannot be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The configured key is not base64 of 32 bytes.
    #[error("must be base64 of 32 random bytes")]
    BadKey,
    /// A sealed secret and no key, a wrong key, or a damaged value.
    #[error("the stored secret cannot be opened with the configured key")]
    Unopenable,
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
}

/// Seals and opens webhook secrets.
#[derive(Clone)]
pub struct SecretSealer {
    key: Option<std::sync::Arc<LessSafeKey>>,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSealer")
            .field("sealing", &self.key.is_some())
            .finish()
    }
}

impl SecretSealer {
    /// Keeps secrets as they are (no key configured).
    pub fn unsealed() -> Self {
        Self { key: None }
    }

    /// Seals with the key given as base64 of 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| SealError::BadKey)?;
        let key =
            UnboundKey::new(&aead::CHACHA20_POLY1305, &bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self {
            key: Some(std::sync::Arc::new(LessSafeKey::new(key))),
        })
    }

    /// The stored form of `secret` for webhook `id`.
    pub fn seal(&self, id: Uuid, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(key) = &self.key else {
            let mut stored = vec![UNSEALED];
            stored.extend_from_slice(secret);
            return Ok(stored);
        };
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = secret.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SealError::Random)?;
        let mut stored = vec![SEALED_V1];
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// The secret a stored value holds for webhook `id`.
    pub fn open(&self, id: Uuid, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        match stored.split_first() {
            Some((&UNSEALED, secret)) => Ok(secret.to_vec()),
            Some((&SEALED_V1, rest)) if rest.len() > aead::NONCE_LEN => {
                let key = self.key.as_ref().ok_or(SealError::Unopenable)?;
                let (nonce, sealed) = rest.split_at(aead::NONCE_LEN);
                let nonce =
                    Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unopenable)?;
                let mut buffer = sealed.to_vec();
                let opened = key
                    .open_in_place(nonce, Aad::from(id.as_bytes()), &mut buffer)
                    .map_err(|_| SealError::Unopenable)?;
                Ok(opened.to_vec())
            }
            _ => Err(SealError::Unopenable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn sealed_secrets_open_only_with_the_key_and_for_their_webhook() {
        let sealer = SecretSealer::from_base64(KEY).unwrap();
        let id = Uuid::now_v7();
        let stored = sealer
            .seal(id, b"a-secret-of-the-authority-0123456789")
            .unwrap();
        assert!(
            !stored.windows(8).any(|w| w == b"a-secret"),
            "not readable in clear"
        );
        assert_eq!(
            sealer.open(id, &stored).unwrap(),
            b"a-secret-of-the-authority-0123456789"
        );
        assert_eq!(
            sealer.open(Uuid::now_v7(), &stored),
            Err(SealError::Unopenable)
        );
        assert_eq!(
            SecretSealer::unsealed().open(id, &stored),
            Err(SealError::Unopenable)
        );
        assert_eq!(
            SecretSealer::from_base64("short").unwrap_err(),
            SealError::BadKey
        );
    }

    #[test]
    fn without_a_key_secrets_are_kept_marked_as_unsealed() {
        let sealer = SecretSealer::unsealed();
        let id = Uuid::now_v7();
        let stored = sealer.seal(id, b"s").unwrap();
        assert_eq!(stored, vec![0, b's']);
        assert_eq!(sealer.open(id, &stored).unwrap(), b"s");
    }
}
