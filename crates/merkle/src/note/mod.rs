//! Signed notes (c2sp.org/signed-note): a text ending in a newline, a blank line, and one or
//! more signature lines `— <key name> <base64(4-byte key ID || signature)>\n` (the dash is
//! U+2014 EM DASH). Opening follows Go's `note.Open`: signatures by unknown keys are
//! ignored, a known key's bad signature rejects the whole note, and at least one known key
//! must have signed.

mod key;

pub use key::{KeyError, NoteSigner, NoteVerifier, ed25519_key_id, is_valid_key_name};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The most signature lines [`open`] reads; the spec asks verifiers to accept at least 16.
pub const MAX_SIGNATURES: usize = 100;

const SIGNATURE_PREFIX: &str = "— ";

/// Why a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// No signature by any of the trusted keys; lists who did sign.
    #[error("note has no signature by a trusted key (signed only by: {})", .signers.join(", "))]
    NoTrustedSignature {
        /// `name+keyid` of each signature found.
        signers: Vec<String>,
    },
    /// A trusted key's signature that does not verify: the text or signature was altered.
    #[error("invalid signature by trusted key {name}+{key_id:08x}")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
    /// Two different trusted keys share a name and key ID, so a signature is ambiguous.
    #[error("two different trusted keys are named {name}+{key_id:08x}")]
    AmbiguousKey {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub key_id: u32,
}

/// An opened note: its text, verified by at least one trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The note text, ending in a newline (without the blank line before the signatures).
    pub text: String,
    /// Signatures by trusted keys, all verified.
    pub verified: Vec<NoteSignature>,
    /// Signatures by other keys, ignored (e.g. witnesses' cosignatures).
    pub unverified: Vec<NoteSignature>,
}

/// Checks that `text` can be a note text: it ends in a newline and has no control
/// characters but newlines (a note as a whole must not, and the text is part of it).
pub(crate) fn check_text(text: &str) -> Result<(), NoteError> {
    check_characters(text)?;
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the text must end with a newline".into(),
        ));
    }
    Ok(())
}

fn check_characters(msg: &str) -> Result<(), NoteError> {
    match msg.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((at, c)) => Err(NoteError::Malformed(format!(
            "control character U+{:04X} at byte {at}",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// Opens a signed note, trusting `verifiers`.
pub fn open(msg: &str, verifiers: &[NoteVerifier]) -> Result<Note, NoteError> {
    check_characters(msg)?;
    // The text may itself hold blank lines: the signatures follow the last one.
    let split = msg.rfind("\n\n").ok_or_else(|| {
        NoteError::Malformed("no blank line between the text and the signatures".into())
    })?;
    let (text, signatures) = (&msg[..=split], &msg[split + 2..]);
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(NoteError::Malformed(if signatures.is_empty() {
            "no signature lines after the blank line".into()
        } else {
            "the last signature line does not end with a newline".into()
        }));
    };

    let mut note = Note {
        text: text.to_owned(),
        verified: Vec::new(),
        unverified: Vec::new(),
    };
    let mut seen_unverified: Vec<&str> = Vec::new();
    for (i, line) in signatures.split('\n').enumerate() {
        let number = i + 1;
        if number > MAX_SIGNATURES {
            return Err(NoteError::Malformed(format!(
                "more than {MAX_SIGNATURES} signatures"
            )));
        }
        let (name, key_id, signature) = parse_signature_line(line, number)?;
        let mut trusted = verifiers
            .iter()
            .filter(|v| v.name() == name && v.key_id() == key_id);
        let Some(verifier) = trusted.next() else {
            // Unknown keys are ignored (C2SP: even if they share a name or an ID with a
            // trusted key); identical repeated lines are listed once.
            if !seen_unverified.contains(&line) {
                seen_unverified.push(line);
                note.unverified.push(NoteSignature {
                    name: name.to_owned(),
                    key_id,
                });
            }
            continue;
        };
        if trusted.any(|other| other.public_key() != verifier.public_key()) {
            return Err(NoteError::AmbiguousKey {
                name: name.to_owned(),
                key_id,
            });
        }
        if note
            .verified
            .iter()
            .any(|s| s.name == name && s.key_id == key_id)
        {
            continue;
        }
        if !verifier.verify(text.as_bytes(), &signature) {
            return Err(NoteError::InvalidSignature {
                name: name.to_owned(),
                key_id,
            });
        }
        note.verified.push(NoteSignature {
            name: name.to_owned(),
            key_id,
        });
    }
    if note.verified.is_empty() {
        return Err(NoteError::NoTrustedSignature {
            signers: note
                .unverified
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.key_id))
                .collect(),
        });
    }
    Ok(note)
}

/// Splits `— <name> <base64>` into the name, the key ID and the signature proper.
fn parse_signature_line(line: &str, number: usize) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let malformed = |what: &str| NoteError::Malformed(format!("signature line {number} {what}"));
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| malformed("does not start with an em dash and a space"))?;
    let (name, b64) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_valid_key_name(name) {
        return Err(malformed(&format!("has an invalid key name {name:?}")));
    }
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| malformed("does not end with a base64 signature"))?;
    if blob.len() < 5 {
        return Err(malformed("is too short for a key ID and a signature"));
    }
    let (id, signature) = blob.split_at(4);
    let key_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    Ok((name, key_id, signature.to_vec()))
}
