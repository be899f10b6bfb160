//! Checkpoints: the exact C2SP byte format, signing and opening, and tampering.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use cpis_merkle::checkpoint::{self, open, open_trusting};
use cpis_merkle::note::{self, NoteError, NoteSigner};
use cpis_merkle::{Checkpoint, CheckpointError, CheckpointSigner, Hash, NoteVerifier};

use crate::common::h;

const ORIGIN: &str = "cpis.example/audit";
/// Root of the 8-leaf Certificate Transparency test tree.
const ROOT: &str = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";

/// A signer with a fixed seed, so that its signatures are fixed too (Ed25519 is
/// deterministic).
fn signer() -> CheckpointSigner {
    CheckpointSigner::from_ed25519_seed(ORIGIN, &[0x42; 32]).expect("valid")
}

fn checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 8, h(ROOT)).expect("valid")
}

/// The signed note of `checkpoint()`: text, blank line, one signature line. The signature
/// was checked independently with `openssl pkeyutl -verify -rawin` against the public key in
/// the vkey below, and the key ID (528151e1) with Python's hashlib.
const GOLDEN: &str = "cpis.example/audit\n\
8\n\
XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\
\n\
— cpis.example/audit UoFR4eVaOCt2Onnc7C1aynJHEC+WQFeUM41Z1IBKrXOlS36xATLDIgdl+hpP7MwOmESPZG8DB2yRbpYBNlHBCuwbXgQ=\n";

#[test]
fn signed_checkpoint_has_the_exact_c2sp_format() {
    let signed = signer().sign(&checkpoint());
    assert_eq!(signed, GOLDEN);
    assert_eq!(
        signer().verifier().vkey(),
        "cpis.example/audit+528151e1+ASFS+NGbeR0kRTJC4V8uq2y3z/p7al7TAJeWDgaYgdsS"
    );
}

#[test]
fn text_format_round_trips_the_c2sp_example() {
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let c = Checkpoint::from_text(text).expect("the spec's example");
    assert_eq!(
        (c.origin(), c.size()),
        ("example.com/behind-the-sofa", 20852163)
    );
    assert_eq!(
        STANDARD.encode(c.root().0),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert_eq!(c.to_text(), text);
    assert_eq!(c.to_string(), text);

    let with_ext = format!("{text}ext one\nsecond extension\n");
    let c = Checkpoint::from_text(&with_ext).expect("extensions are allowed");
    assert_eq!(c.extensions(), ["ext one", "second extension"]);
    assert_eq!(c.to_text(), with_ext);
}

#[test]
fn round_trip_with_a_pkcs8_key() {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("keygen");
    let signer = CheckpointSigner::from_pkcs8(ORIGIN, pkcs8.as_ref()).expect("valid");
    assert_eq!(signer.key_name(), ORIGIN);
    let verifier = NoteVerifier::from_vkey(&signer.verifier().vkey()).expect("own vkey");
    let c = checkpoint()
        .with_extensions(vec!["witnessed-by example".into()])
        .expect("valid");
    assert_eq!(open(&signer.sign(&c), &verifier), Ok(c));

    let empty = Checkpoint::new(ORIGIN, 0, cpis_merkle::EMPTY_TREE_HASH).expect("valid");
    let signed = signer.sign(&empty);
    assert!(signed.contains("\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— "));
    assert_eq!(open(&signed, &verifier), Ok(empty));
}

#[test]
fn openssl_style_pkcs8_v1_keys_are_accepted() {
    // PKCS#8 v1 for Ed25519, as `openssl genpkey -algorithm ed25519` writes it (RFC 8410):
    // version 0, algorithm id-Ed25519, and the 32-byte seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[0x42; 32]);
    let from_der = CheckpointSigner::from_pkcs8(ORIGIN, &der).expect("v1 PKCS#8");
    assert_eq!(from_der.verifier(), signer().verifier());
    assert_eq!(from_der.sign(&checkpoint()), GOLDEN);
}

/// Replaces the first occurrence of `from` in the text part of `signed`.
fn tamper(signed: &str, from: &str, to: &str) -> String {
    assert!(signed.contains(from), "{from:?} not in note");
    signed.replacen(from, to, 1)
}

#[test]
fn tampering_is_detected() {
    let signed = signer().sign(&checkpoint());
    let verifier = signer().verifier();
    let invalid = |msg: &str| {
        matches!(
            open(msg, &verifier),
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        )
    };
    assert!(invalid(&tamper(
        &signed,
        "cpis.example/audit\n8",
        "cpis.example/audiT\n8"
    )));
    assert!(invalid(&tamper(&signed, "\n8\n", "\n9\n")));
    assert!(invalid(&tamper(&signed, "\n8\n", "\n08\n")));
    assert!(invalid(&tamper(&signed, "XcnaeacG", "XcnaeacH")));
    // An added extension line changes the signed text too.
    assert!(invalid(&tamper(&signed, "=\n\n", "=\nextra\n\n")));

    // Every character of the signature's base64 changed in turn.
    let line_start = signed.rfind("— ").expect("signature line");
    let b64_start = line_start + "— cpis.example/audit ".len();
    for i in b64_start..signed.len() - 1 {
        let mut bytes = signed.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).expect("ASCII");
        assert!(
            open(&forged, &verifier).is_err(),
            "signature byte {i} changed"
        );
    }
}

#[test]
fn only_trusted_keys_count() {
    let c = checkpoint();
    let other = CheckpointSigner::from_ed25519_seed(ORIGIN, &[7; 32]).expect("valid");
    let by_other = other.sign(&c);
    let err = open(&by_other, &signer().verifier()).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Note(NoteError::NoTrustedSignature { signers }) if signers.len() == 1),
        "{err}"
    );
    // Another key under another name, too.
    let stranger = CheckpointSigner::from_ed25519_seed("stranger", &[0x42; 32]).expect("valid");
    assert!(open(&stranger.sign(&c), &signer().verifier()).is_err());
    // Co-signed notes open with either key (rotation, witnesses).
    let both = format!(
        "{}{}",
        signer().sign(&c),
        by_other.rsplit_once("\n\n").expect("sig").1
    );
    assert_eq!(open(&both, &other.verifier()), Ok(c.clone()));
    assert_eq!(open(&both, &signer().verifier()), Ok(c.clone()));
    assert_eq!(
        open_trusting(&both, &[other.verifier(), signer().verifier()]),
        Ok(c)
    );
}

/// Signs `text` as a plain note with the checkpoint key, as an attacker holding the key (or a
/// buggy log) might: the checkpoint parser must still refuse malformed bodies.
fn signed_text(text: &str) -> String {
    NoteSigner::from_ed25519_seed(ORIGIN, &[0x42; 32])
        .expect("valid")
        .sign(text)
        .expect("valid note text")
}

#[test]
fn malformed_bodies_are_rejected_even_when_signed() {
    let verifier = signer().verifier();
    let root = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";
    let cases: Vec<(String, CheckpointError)> = vec![
        ("o\n8\n".into(), CheckpointError::MissingLines { found: 2 }),
        (
            format!("o\n08\n{root}\n"),
            CheckpointError::InvalidTreeSize("08".into()),
        ),
        (
            format!("o\n+8\n{root}\n"),
            CheckpointError::InvalidTreeSize("+8".into()),
        ),
        (
            format!("o\n\n{root}\n"),
            CheckpointError::InvalidTreeSize("".into()),
        ),
        (
            format!("o\n 8\n{root}\n"),
            CheckpointError::InvalidTreeSize(" 8".into()),
        ),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::InvalidTreeSize("18446744073709551616".into()),
        ),
        (
            "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==\n".into(),
            CheckpointError::InvalidRootHash("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==".into()),
        ),
        (
            "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n".into(),
            CheckpointError::InvalidRootHash("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=".into()),
        ),
        (
            "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n".into(),
            CheckpointError::InvalidRootHash("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg".into()),
        ),
        (
            format!("\n8\n{root}\n"),
            CheckpointError::InvalidOrigin("".into()),
        ),
        (
            format!("o\n8\n{root}\n\n"),
            CheckpointError::InvalidExtension { line: 1 },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(
            Checkpoint::from_text(&text).as_ref(),
            Err(&want),
            "{text:?}"
        );
        assert_eq!(
            open(&signed_text(&text), &verifier),
            Err(want),
            "signed {text:?}"
        );
    }
    assert_eq!(
        Checkpoint::from_text(&format!("o\n8\n{root}")),
        Err(CheckpointError::Unterminated)
    );
    assert_eq!(
        CheckpointError::InvalidTreeSize("08".into()).to_string(),
        "checkpoint tree size \"08\" is not a decimal number without leading zeros that fits in 64 bits"
    );
    // The largest size parses.
    let max = Checkpoint::from_text(&format!("o\n18446744073709551615\n{root}\n"));
    assert_eq!(max.map(|c| c.size()), Ok(u64::MAX));
}

#[test]
fn only_valid_checkpoints_can_be_built() {
    let root = Hash::default();
    for origin in ["", "two\nlines", "tab\tin origin"] {
        assert_eq!(
            Checkpoint::new(origin, 1, root),
            Err(CheckpointError::InvalidOrigin(origin.into()))
        );
    }
    // C2SP only recommends URL-like origins; spaces are allowed.
    assert!(Checkpoint::new("an origin with spaces", 1, root).is_ok());
    let c = Checkpoint::new("o", 1, root).expect("valid");
    assert_eq!(
        c.clone().with_extensions(vec!["ok".into(), "".into()]),
        Err(CheckpointError::InvalidExtension { line: 2 })
    );
    assert_eq!(
        c.with_extensions(vec!["a\nb".into()]),
        Err(CheckpointError::InvalidExtension { line: 1 })
    );
    assert!(CheckpointSigner::from_pkcs8("o", &[0; 10]).is_err());
    assert!(CheckpointSigner::from_ed25519_seed("bad name", &[1; 32]).is_err());
    // The note module is reachable for callers that need the raw note.
    let signed = signer().sign(&checkpoint());
    let n = note::open(&signed, &[signer().verifier()]).expect("valid");
    assert_eq!(checkpoint::Checkpoint::from_text(&n.text), Ok(checkpoint()));
}
