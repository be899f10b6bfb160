//! Signed notes, against the test vectors of Go's `golang.org/x/mod/sumdb/note`
//! (`note_test.go`): the same keys, texts and signatures, byte for byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use cpis_merkle::note::{self, KeyError, NoteError, NoteSignature, NoteSigner, NoteVerifier};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
/// The seed inside Go's `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALV...` (after the 0x01).
const PETER_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> NoteVerifier {
    NoteVerifier::from_vkey(PETER_VKEY).expect("Go's vkey")
}

fn enoch() -> NoteVerifier {
    NoteVerifier::from_vkey(ENOCH_VKEY).expect("Go's vkey")
}

fn sig(name: &str, key_id: u32) -> NoteSignature {
    NoteSignature {
        name: name.into(),
        key_id,
    }
}

#[test]
fn go_verifier_keys_parse_and_print_back() {
    let v = peter();
    assert_eq!((v.name(), v.key_id()), ("PeterNeumann", 0xc74f20a3));
    assert_eq!(v.vkey(), PETER_VKEY);
    assert_eq!(v.to_string(), PETER_VKEY);
    assert_eq!(enoch().key_id(), 0xaf0cfe78);
    let rebuilt = NoteVerifier::new_ed25519("PeterNeumann", *v.public_key()).expect("valid");
    assert_eq!(rebuilt, v);
}

#[test]
fn mangled_verifier_keys_are_rejected() {
    // As Go's TestNewVerifier: every proper substring, and every single-byte change.
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len()) {
                let s = std::str::from_utf8(&b[i..j]).expect("ASCII");
                assert!(NoteVerifier::from_vkey(s).is_err(), "{s:?} accepted");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let s = String::from_utf8(m).expect("ASCII");
        assert!(NoteVerifier::from_vkey(&s).is_err(), "{s:?} accepted");
    }
    // Wrong key length and unknown algorithm, each with a key ID adjusted to match.
    let long = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
    assert!(matches!(
        NoteVerifier::from_vkey(long),
        Err(KeyError::MalformedVerifierKey(_))
    ));
    let alg = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(
        NoteVerifier::from_vkey(alg),
        Err(KeyError::UnknownAlgorithm(0x65))
    );
}

#[test]
fn signing_reproduces_go_byte_for_byte() {
    let skey = STANDARD.decode(PETER_SKEY_B64).expect("base64");
    assert_eq!(skey[0], 0x01, "Ed25519");
    let seed: [u8; 32] = skey[1..].try_into().expect("32-byte seed");
    let signer = NoteSigner::from_ed25519_seed("PeterNeumann", &seed).expect("valid");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.verifier(), peter());
    let signed = signer.sign(TEXT).expect("valid text");
    assert_eq!(signed, format!("{TEXT}\n{PETER_SIG}"));
    assert_eq!(format!("{signer:?}"), "NoteSigner(PeterNeumann+c74f20a3)");
    assert!(signer.sign("no newline").is_err());
    assert!(signer.sign("tab\there\n").is_err());
}

#[test]
fn opening_goes_as_go_opens() {
    let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let n = note::open(&msg, &[peter()]).expect("peter signed");
    assert_eq!(n.text, TEXT);
    assert_eq!(n.verified, vec![sig("PeterNeumann", 0xc74f20a3)]);
    assert_eq!(n.unverified, vec![sig("EnochRoot", 0xaf0cfe78)]);

    let n = note::open(&msg, &[peter(), enoch()]).expect("both signed");
    assert_eq!(n.verified.len(), 2);
    assert!(n.unverified.is_empty());

    let err = note::open(&msg, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "note has no signature by a trusted key (signed only by: PeterNeumann+c74f20a3, EnochRoot+af0cfe78)"
    );

    // A trusted key's altered signature rejects the note.
    let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert_eq!(
        note::open(&bad, &[peter()]),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );

    // Duplicates are dropped; an altered signature by an unknown key is merely ignored.
    let enoch_abcd = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
    let dup = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_abcd}");
    let n = note::open(&dup, &[peter()]).expect("peter signed");
    assert_eq!(n.verified.len(), 1);
    assert_eq!(n.unverified.len(), 2);

    // More than 100 signature lines.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
    assert!(matches!(
        note::open(&many, &[peter()]),
        Err(NoteError::Malformed(_))
    ));
}

#[test]
fn malformed_notes_are_rejected() {
    let bad = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!(
            "{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n— PeterNeumann x08g\n"),
        format!("{TEXT}\n— PeterNeumann not*base64\n"),
        format!("{TEXT}\r\n{PETER_SIG}"),
    ];
    for msg in bad {
        let err = note::open(&msg, &[peter()]);
        assert!(
            matches!(err, Err(NoteError::Malformed(_))),
            "{msg:?}: {err:?}"
        );
    }
    let err = note::open(
        &format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        &[peter()],
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "malformed note: signature line 2 does not start with an em dash and a space"
    );
}

#[test]
fn the_same_trusted_key_twice_is_not_ambiguous() {
    let msg = format!("{TEXT}\n{PETER_SIG}");
    assert!(note::open(&msg, &[peter(), peter()]).is_ok());
}

#[test]
fn key_names_are_checked() {
    for name in ["", "a b", "a+b", "tab\t", "nbsp\u{a0}"] {
        assert!(!note::is_valid_key_name(name), "{name:?}");
        assert!(NoteVerifier::new_ed25519(name, [1; 32]).is_err());
        assert!(NoteSigner::from_ed25519_seed(name, &[1; 32]).is_err());
    }
    assert!(note::is_valid_key_name("cpis.example/audit"));
    assert_eq!(
        NoteSigner::from_pkcs8("k", b"not a key")
            .unwrap_err()
            .to_string(),
        "invalid Ed25519 private key: InvalidEncoding"
    );
}
