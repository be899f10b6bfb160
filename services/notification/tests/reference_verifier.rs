//! The Python receiver in docs/api/notification.md is the one authorities copy: it must
//! accept what the service signs (with either secret during a rotation) and reject stale,
//! forged and malformed signatures. It is run here with the machine's python3.

use std::process::Command;

use cpis_notification::signature;

/// The ```python block of the docs that defines `verify`.
fn docs_verifier() -> String {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/notification.md"),
    )
    .expect("docs/api/notification.md");
    docs.split("```python")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|code| code.contains("def verify("))
        .expect("a Python block defining verify in docs/api/notification.md")
        .to_owned()
}

/// What the docs' `verify` answers for `header`, `body` and `secret`.
fn python_verify(header: &str, body: &[u8], secret: &str) -> bool {
    let program = format!(
        "{}\nimport sys\nprint(verify(sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()))\n",
        docs_verifier()
    );
    let out = Command::new("python3")
        .args(["-c", &program, header])
        .arg(std::str::from_utf8(body).expect("a UTF-8 body"))
        .arg(secret)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the docs' verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => true,
        "False" => false,
        other => panic!("verify printed {other:?}"),
    }
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("seconds fit")
}

#[test]
fn the_documented_receiver_accepts_what_the_service_signs_and_nothing_else() {
    let body = br#"{"notificationId":"0193","kind":"NOTIFICATION_KIND_ATTENDANCE"}"#;
    let current: &[u8] = b"current-secret-of-at-least-32-characters";
    let previous: &[u8] = b"previous-secret-of-at-least-32-characters";

    // Signed now with both secrets, as during a rotation: either secret verifies.
    let header = signature::sign(&[current, previous], now(), body);
    assert!(python_verify(
        &header,
        body,
        "current-secret-of-at-least-32-characters"
    ));
    assert!(python_verify(
        &header,
        body,
        "previous-secret-of-at-least-32-characters"
    ));
    // The service's own reference verifier agrees.
    assert!(signature::verify(&header, body, current, now(), 300).is_ok());

    // Another secret, a changed body, a stale or future timestamp: refused.
    assert!(!python_verify(
        &header,
        body,
        "someone-elses-secret-of-32-characters"
    ));
    assert!(!python_verify(
        &header,
        br#"{"notificationId":"0194","kind":"NOTIFICATION_KIND_ATTENDANCE"}"#,
        "current-secret-of-at-least-32-characters"
    ));
    let stale = signature::sign(&[current], now() - 600, body);
    assert!(!python_verify(
        &stale,
        body,
        "current-secret-of-at-least-32-characters"
    ));
    let future = signature::sign(&[current], now() + 600, body);
    assert!(!python_verify(
        &future,
        body,
        "current-secret-of-at-least-32-characters"
    ));

    // Malformed headers are refused, not crashed on.
    for header in ["", "t=abc,v1=00", "v1=00", "t=1,t=2,v1=00", "garbage"] {
        assert!(
            !python_verify(header, body, "current-secret-of-at-least-32-characters"),
            "{header:?}"
        );
    }
}
