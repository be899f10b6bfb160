//! Checkpoints (c2sp.org/tlog-checkpoint): the signed-note text
//!
//! ```text
//! <origin>\n
//! <tree size, ASCII decimal, no leading zeros>\n
//! <base64 (RFC 4648 §4, padded) of the 32-byte RFC 6962 root hash>\n
//! [<non-empty extension line>\n ...]
//! ```
//!
//! signed as a [note](crate::note) by the log's Ed25519 key, so that existing transparency
//! log tools (Go's `sumdb/note`, witnesses) read it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::note::{self, KeyError, NoteError, NoteSigner, NoteVerifier};
use crate::{HASH_SIZE, Hash};

/// Why a checkpoint could not be made, opened or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note around the checkpoint was refused.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// An origin that is empty or has a control character (newlines included).
    #[error("invalid checkpoint origin {0:?}: it must be one non-empty line of text")]
    InvalidOrigin(String),
    /// A text whose last line has no newline.
    #[error("checkpoint text must end with a newline")]
    Unterminated,
    /// A text with fewer than the three mandatory lines.
    #[error("a checkpoint needs an origin, a tree size and a root hash line; found {found} lines")]
    MissingLines {
        /// How many lines the text had.
        found: usize,
    },
    /// A size line that is not ASCII decimal without leading zeros, or too large.
    #[error(
        "checkpoint tree size {0:?} is not a decimal number without leading zeros that fits in 64 bits"
    )]
    InvalidTreeSize(String),
    /// A root line that is not the standard base64 of 32 bytes.
    #[error("checkpoint root hash {0:?} is not the base64 of {HASH_SIZE} bytes")]
    InvalidRootHash(String),
    /// An extension line that is empty or has a control character.
    #[error("checkpoint extension line {line} is empty or has a control character")]
    InvalidExtension {
        /// The extension line's number, from 1.
        line: usize,
    },
}

/// A log's tree head: its origin, size and root hash, and any extension lines.
///
/// Only valid checkpoints can be built, so formatting and signing cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

/// Whether `line` can be one line of note text.
fn is_text_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(|c| c < ' ')
}

impl Checkpoint {
    /// A checkpoint of the log `origin` at `size` records with root `root`.
    ///
    /// C2SP recommends an origin that is a schema-less URL (`example.org/audit`) and the same
    /// as the signing key's name.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if !is_text_line(origin) {
            return Err(CheckpointError::InvalidOrigin(origin.to_owned()));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The same checkpoint with these extension lines (opaque to monitors; C2SP advises
    /// against them).
    pub fn with_extensions(mut self, lines: Vec<String>) -> Result<Self, CheckpointError> {
        if let Some(i) = lines.iter().position(|l| !is_text_line(l)) {
            return Err(CheckpointError::InvalidExtension { line: i + 1 });
        }
        self.extensions = lines;
        Ok(self)
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree of that size.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The extension lines, without their newlines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: the lines above, each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.0)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a note text (as [`note::open`] returns it) into a checkpoint.
    pub fn from_text(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Unterminated)?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::MissingLines { found: lines.len() });
        }
        let size = parse_size(lines[1])?;
        let root = parse_root(lines[2])?;
        Checkpoint::new(lines[0], size, root)?
            .with_extensions(lines[3..].iter().map(|l| (*l).to_owned()).collect())
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let invalid = || CheckpointError::InvalidTreeSize(line.to_owned());
    // `u64::from_str` would also take "+5" and "007"; C2SP allows neither.
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(invalid());
    }
    line.parse().map_err(|_| invalid())
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let invalid = || CheckpointError::InvalidRootHash(line.to_owned());
    // The standard engine insists on padding and zero trailing bits, so each root has
    // exactly one accepted spelling.
    let bytes = STANDARD.decode(line).map_err(|_| invalid())?;
    Hash::from_slice(&bytes).map_err(|_| invalid())
}

/// The log's checkpoint signing key.
///
/// It signs checkpoints only, never arbitrary text, so the log key cannot be made to sign
/// something that parses as a checkpoint it never produced.
#[derive(Debug)]
pub struct CheckpointSigner {
    signer: NoteSigner,
}

impl CheckpointSigner {
    /// A signer named `key_name` from a PKCS#8 (DER) Ed25519 private key.
    pub fn from_pkcs8(key_name: &str, pkcs8_der: &[u8]) -> Result<Self, KeyError> {
        Ok(CheckpointSigner {
            signer: NoteSigner::from_pkcs8(key_name, pkcs8_der)?,
        })
    }

    /// A signer named `key_name` from a raw 32-byte Ed25519 seed.
    pub fn from_ed25519_seed(key_name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        Ok(CheckpointSigner {
            signer: NoteSigner::from_ed25519_seed(key_name, seed)?,
        })
    }

    /// The key name on the signature line.
    pub fn key_name(&self) -> &str {
        self.signer.name()
    }

    /// The verifier for this key; its [`NoteVerifier::vkey`] is what auditors are given.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.signer.sign_checked(&checkpoint.to_text())
    }
}

/// Opens a signed checkpoint, trusting only `verifier`.
pub fn open(signed_note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, CheckpointError> {
    open_trusting(signed_note, std::slice::from_ref(verifier))
}

/// Opens a signed checkpoint signed by at least one of `verifiers` (e.g. during a key
/// rotation, the old and the new key).
pub fn open_trusting(
    signed_note: &str,
    verifiers: &[NoteVerifier],
) -> Result<Checkpoint, CheckpointError> {
    let note = note::open(signed_note, verifiers)?;
    Checkpoint::from_text(&note.text)
}
