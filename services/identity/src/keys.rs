//! The Ed25519 keys that sign session tokens: generated and stored by the service, private
//! halves encrypted at rest (ChaCha20-Poly1305 under the configured key encryption key),
//! rotated on a schedule, and published while they may still verify an unexpired token.
//!
//! Keys are numbered by generation; the newest is the current one. Replicas race to rotate
//! by inserting the next generation: the database's primary key lets exactly one win, and
//! the others adopt its key when they re-read.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cpis_mesh::Shutdown;
use cpis_mesh::token::{TokenSigner, VerificationKey};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::store::{IdentityStore, StoreError, StoredSigningKey};

/// Encrypts and decrypts private keys at rest.
pub struct KeyEncryption {
    key: LessSafeKey,
}

impl std::fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryption(<key redacted>)")
    }
}

/// Why signing keys could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored private key does not decrypt: a wrong key encryption key, or tampering.
    #[error("signing key {0} does not decrypt with the configured key encryption key")]
    Decrypt(String),
    /// The system's random number generator or key generation failed.
    #[error("signing key generation failed: {0}")]
    Generate(String),
    /// Another replica kept winning the rotation race, which should not happen.
    #[error("no current signing key after several attempts")]
    NoCurrentKey,
}

impl KeyEncryption {
    /// The key from 64 hex digits (32 bytes).
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let bytes = cpis_mesh::nhs_hash::decode_hex(hex.trim())
            .ok_or_else(|| "must be hexadecimal".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "must be 32 bytes (64 hex digits); it has {} bytes",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| "is not a ChaCha20-Poly1305 key".to_owned())?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `nonce || ciphertext || tag`; the key id is bound as associated data, so a sealed key
    /// moved to another row does not open.
    pub fn seal(&self, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Generate("no randomness".to_owned()))?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key_id.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| KeyError::Generate("sealing failed".to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of [`seal`](Self::seal)'s output.
    pub fn open(&self, key_id: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let fail = || KeyError::Decrypt(key_id.to_owned());
        if sealed.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut buffer)
            .map_err(|_| fail())?;
        Ok(plaintext.to_vec())
    }
}

/// A public key as published by `GetSigningKeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    /// The key id (`kid`).
    pub key_id: String,
    /// The raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// When it was made.
    pub create_time: OffsetDateTime,
    /// Whether it signs new tokens.
    pub current: bool,
    /// After this no token it signed can be valid; `None` for the current key.
    pub expire_time: Option<OffsetDateTime>,
}

impl PublishedKey {
    /// The verifier's view of the key.
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            key_id: self.key_id.clone(),
            public_key: self.public_key.clone(),
        }
    }
}

/// How keys are rotated and how long retired keys stay published.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// How long a key signs before the next one takes over.
    pub rotation_period: Duration,
    /// How long after its retirement a key may still verify a token: the token lifetime,
    /// plus the time another replica may go on signing with it before it re-reads the keys,
    /// plus the verifiers' clock leeway.
    pub verify_window: Duration,
}

struct Ring {
    signer: Arc<TokenSigner>,
    current_generation: i64,
    keys: Vec<StoredSigningKey>,
}

/// The service's signing keys: the current signer and every key still published.
#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn IdentityStore>,
    encryption: Arc<KeyEncryption>,
    policy: KeyPolicy,
    ring: Arc<ArcSwap<Ring>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.signer().verification_key().key_id)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Loads the keys, making the first one or rotating when due.
    pub async fn load(
        store: Arc<dyn IdentityStore>,
        encryption: KeyEncryption,
        policy: KeyPolicy,
    ) -> Result<Self, KeyError> {
        let encryption = Arc::new(encryption);
        let ring = load_ring(store.as_ref(), &encryption, policy, false, None).await?;
        Ok(Self {
            store,
            encryption,
            policy,
            ring: Arc::new(ArcSwap::from_pointee(ring)),
        })
    }

    /// The signer of new tokens.
    pub fn signer(&self) -> Arc<TokenSigner> {
        self.ring.load().signer.clone()
    }

    /// Every key that may still verify an unexpired token at `now`, the current one first.
    pub fn published(&self, now: OffsetDateTime) -> Vec<PublishedKey> {
        let ring = self.ring.load();
        let window =
            time::Duration::try_from(self.policy.verify_window).unwrap_or(time::Duration::MAX);
        let mut keys: Vec<PublishedKey> = ring
            .keys
            .iter()
            .filter_map(|key| {
                let current = key.generation == ring.current_generation;
                let expire_time = if current {
                    None
                } else {
                    // A key without a retire time was superseded without being marked (a
                    // newer generation exists): it retired when its successor was made.
                    let retired = key.retire_time.or_else(|| {
                        ring.keys
                            .iter()
                            .find(|k| k.generation == key.generation + 1)
                            .map(|k| k.create_time)
                    })?;
                    Some(retired.saturating_add(window))
                };
                if expire_time.is_some_and(|t| t <= now) {
                    return None;
                }
                Some(PublishedKey {
                    key_id: key.key_id.clone(),
                    public_key: key.public_key.clone(),
                    create_time: key.create_time,
                    current,
                    expire_time,
                })
            })
            .collect();
        keys.sort_by_key(|k| (!k.current, std::cmp::Reverse(k.create_time)));
        keys
    }

    /// Re-reads the keys (another replica may have rotated) and rotates when due.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let current = self.ring.load().current_generation;
        let ring = load_ring(
            self.store.as_ref(),
            &self.encryption,
            self.policy,
            false,
            Some(current),
        )
        .await?;
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    /// Makes a new current key now, whatever the schedule says.
    pub async fn rotate_now(&self) -> Result<(), KeyError> {
        let ring = load_ring(
            self.store.as_ref(),
            &self.encryption,
            self.policy,
            true,
            None,
        )
        .await?;
        tracing::info!(
            key_id = ring.signer.verification_key().key_id,
            "signing key rotated"
        );
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    /// Refreshes every `interval` until shutdown; a failed refresh keeps the keys it had.
    pub fn spawn_refresher(&self, interval: Duration, shutdown: Shutdown) {
        let ring = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.requested() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                if let Err(error) = ring.refresh().await {
                    tracing::warn!(%error, "signing keys not refreshed");
                }
            }
        });
    }
}

/// Reads the keys, adds a generation when there is none, when the newest is due for rotation
/// or when `force` is set, and builds the signer of the newest.
async fn load_ring(
    store: &dyn IdentityStore,
    encryption: &KeyEncryption,
    policy: KeyPolicy,
    mut force: bool,
    known_generation: Option<i64>,
) -> Result<Ring, KeyError> {
    for _ in 0..5 {
        let keys = store.signing_keys().await?;
        let now = OffsetDateTime::now_utc();
        let newest = keys.iter().max_by_key(|k| k.generation);
        let due = newest.is_none_or(|k| {
            k.create_time.saturating_add(
                time::Duration::try_from(policy.rotation_period).unwrap_or(time::Duration::MAX),
            ) <= now
        });
        if force || due {
            let generation = newest.map_or(1, |k| k.generation + 1);
            let key = new_key(encryption, generation, now)?;
            // Whether this replica won or another did, the next read has a fresh key.
            if !store.add_signing_key(&key).await? {
                tracing::debug!(generation, "another replica rotated first");
            }
            force = false;
            continue;
        }
        let Some(newest) = newest else { continue };
        if known_generation != Some(newest.generation) {
            tracing::info!(key_id = newest.key_id, "signing with key");
        }
        let pkcs8 = encryption.open(&newest.key_id, &newest.sealed_private_key)?;
        let signer = TokenSigner::from_pkcs8(&newest.key_id, &pkcs8)
            .map_err(|_| KeyError::Decrypt(newest.key_id.clone()))?;
        return Ok(Ring {
            signer: Arc::new(signer),
            current_generation: newest.generation,
            keys,
        });
    }
    Err(KeyError::NoCurrentKey)
}

fn new_key(
    encryption: &KeyEncryption,
    generation: i64,
    now: OffsetDateTime,
) -> Result<StoredSigningKey, KeyError> {
    let key_id = format!(
        "k{generation}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (signer, pkcs8) =
        TokenSigner::generate(&key_id).map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(StoredSigningKey {
        generation,
        public_key: signer.verification_key().public_key,
        sealed_private_key: encryption.seal(&key_id, &pkcs8)?,
        key_id,
        create_time: now,
        retire_time: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn sealed_keys_open_only_under_their_id_and_key() {
        let kek = KeyEncryption::from_hex(KEK).unwrap();
        let sealed = kek.seal("k1", b"secret pkcs8").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(kek.open("k1", &sealed).unwrap(), b"secret pkcs8");
        assert!(kek.open("k2", &sealed).is_err());
        let other = KeyEncryption::from_hex(&KEK.replace("00", "ff")).unwrap();
        assert!(other.open("k1", &sealed).is_err());
        assert!(kek.open("k1", &sealed[..5]).is_err());
    }

    #[test]
    fn key_encryption_keys_must_be_32_bytes_of_hex() {
        assert!(KeyEncryption::from_hex("zz").is_err());
        assert!(KeyEncryption::from_hex("0011").is_err());
        assert!(KeyEncryption::from_hex(KEK).is_ok());
    }
}
