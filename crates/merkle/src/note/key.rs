//! Ed25519 note keys as c2sp.org/signed-note names them, and the verifier-key string of Go's
//! `golang.org/x/mod/sumdb/note` (`<name>+<hex key ID>+<base64(0x01 || public key)>`), so
//! that outside tools can be handed the log's public key as is.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use super::NoteError;
use crate::hash::sha256;

/// The signed-note signature type byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
const PUBLIC_KEY_LEN: usize = 32;

/// Why a key or key name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key name that is empty or has a space or a `+`.
    #[error("invalid key name {0:?}: it must be non-empty, with no spaces and no '+'")]
    InvalidName(String),
    /// A verifier key string not of the form `<name>+<8 hex digits>+<base64>`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// A verifier key of an algorithm other than Ed25519.
    #[error("verifier key algorithm {0:#04x} is not Ed25519 (0x01)")]
    UnknownAlgorithm(u8),
    /// A verifier key whose stated key ID is not the one its name and key give.
    #[error(
        "verifier key ID {stated:08x} does not match its name and public key, which give {computed:08x}"
    )]
    KeyIdMismatch {
        /// The key ID written in the verifier key.
        stated: u32,
        /// The key ID computed from the name and public key.
        computed: u32,
    },
    /// A private key ring does not accept.
    #[error("invalid Ed25519 private key: {0}")]
    PrivateKeyRejected(String),
}

/// Whether `name` can name a note key: non-empty, without Unicode spaces or `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(KeyError::InvalidName(name.to_owned()))
    }
}

/// The key ID of a key: the first four bytes, big-endian, of
/// SHA-256(key name || 0x0A || signature type || public key).
fn key_id_of(name: &str, typed_key: &[u8]) -> u32 {
    let h = sha256(&[name.as_bytes(), b"\n", typed_key]);
    u32::from_be_bytes([h.0[0], h.0[1], h.0[2], h.0[3]])
}

/// The key ID of an Ed25519 key named `name` (c2sp.org/signed-note, "Ed25519 signatures").
pub fn ed25519_key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    key_id_of(name, &typed_key(public_key))
}

fn typed_key(public_key: &[u8; 32]) -> [u8; 1 + PUBLIC_KEY_LEN] {
    let mut out = [0u8; 1 + PUBLIC_KEY_LEN];
    out[0] = ALG_ED25519;
    out[1..].copy_from_slice(public_key);
    out
}

/// A trusted public key that note signatures are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    public_key: [u8; PUBLIC_KEY_LEN],
}

impl NoteVerifier {
    /// A verifier for the Ed25519 `public_key` named `name`.
    pub fn new_ed25519(name: &str, public_key: [u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses a verifier key `<name>+<8 hex digits key ID>+<base64(0x01 || public key)>`,
    /// checking the key ID against the name and key as Go's `note.NewVerifier` does.
    pub fn from_vkey(vkey: &str) -> Result<Self, KeyError> {
        let (name, rest) = vkey.split_once('+').ok_or(KeyError::MalformedVerifierKey(
            "expected <name>+<key ID>+<key>",
        ))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(KeyError::MalformedVerifierKey(
            "expected <name>+<key ID>+<key>",
        ))?;
        check_name(name)?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError::MalformedVerifierKey(
                "the key ID must be 8 hex digits",
            ));
        }
        let stated = u32::from_str_radix(id_hex, 16)
            .map_err(|_| KeyError::MalformedVerifierKey("the key ID must be 8 hex digits"))?;
        let typed = STANDARD
            .decode(key_b64)
            .map_err(|_| KeyError::MalformedVerifierKey("the key is not base64"))?;
        let Some((&alg, key)) = typed.split_first() else {
            return Err(KeyError::MalformedVerifierKey("the key is empty"));
        };
        // Like Go: the ID covers the typed key bytes, whatever the algorithm.
        let computed = key_id_of(name, &typed);
        if stated != computed {
            return Err(KeyError::KeyIdMismatch { stated, computed });
        }
        if alg != ALG_ED25519 {
            return Err(KeyError::UnknownAlgorithm(alg));
        }
        let public_key = <[u8; PUBLIC_KEY_LEN]>::try_from(key)
            .map_err(|_| KeyError::MalformedVerifierKey("an Ed25519 public key is 32 bytes"))?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: stated,
            public_key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The verifier key string, as [`NoteVerifier::from_vkey`] and Go's `note.NewVerifier`
    /// read it.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(typed_key(&self.public_key))
        )
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.vkey())
    }
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({})", self.vkey())
    }
}

impl FromStr for NoteVerifier {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_vkey(s)
    }
}

/// A named Ed25519 private key that signs notes.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key_pair: Ed25519KeyPair,
}

impl NoteSigner {
    /// A signer from a PKCS#8 Ed25519 key (DER; v1 as OpenSSL writes it, or v2 with the
    /// public key, which must then match).
    pub fn from_pkcs8(name: &str, pkcs8_der: &[u8]) -> Result<Self, KeyError> {
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der)
            .map_err(|e| KeyError::PrivateKeyRejected(e.to_string()))?;
        Self::from_key_pair(name, key_pair)
    }

    /// A signer from a raw 32-byte Ed25519 seed (the form Go's note signer keys carry).
    pub fn from_ed25519_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| KeyError::PrivateKeyRejected(e.to_string()))?;
        Self::from_key_pair(name, key_pair)
    }

    fn from_key_pair(name: &str, key_pair: Ed25519KeyPair) -> Result<Self, KeyError> {
        check_name(name)?;
        let mut public_key = [0u8; PUBLIC_KEY_LEN];
        public_key.copy_from_slice(key_pair.public_key().as_ref());
        Ok(NoteSigner {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &public_key),
            key_pair,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The verifier for this key, to hand to whoever checks the notes.
    pub fn verifier(&self) -> NoteVerifier {
        let mut public_key = [0u8; PUBLIC_KEY_LEN];
        public_key.copy_from_slice(self.key_pair.public_key().as_ref());
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key,
        }
    }

    /// Signs `text` (which must end with a newline and have no control characters other
    /// than newlines) and returns the signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        super::check_text(text)?;
        Ok(self.sign_checked(text))
    }

    /// Signs a text already known to be a valid note text.
    pub(crate) fn sign_checked(&self, text: &str) -> String {
        let signature = self.key_pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + signature.as_ref().len());
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(signature.as_ref());
        format!("{text}\n— {} {}\n", self.name, STANDARD.encode(blob))
    }
}

impl fmt::Debug for NoteSigner {
    // Name and key ID identify the key; nothing derived from the private half is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}
