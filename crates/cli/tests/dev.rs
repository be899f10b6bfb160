//! `cpis dev` as a newcomer runs it: the first run builds the demo and the three commands
//! it suggests work; Ctrl-C stops it cleanly; a second run keeps the data.
//!
//! It binds the fixed dev ports (50051-50055, 9501-9505): stop any `cpis dev` of your own
//! before running it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CPIS: &str = env!("CARGO_BIN_EXE_cpis");

/// A running `cpis dev` and the lines it printed.
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Dev {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(CPIS)
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .env_remove("CPIS_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cpis dev");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// The lines up to and including the first containing `marker`.
    fn until(&self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let done = line.contains(marker);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "cpis dev printed no `{marker}` (are ports 50051-50055 free?); it printed: \
                     {seen:#?}"
                ),
            }
        }
    }

    /// Ctrl-C, then the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("cpis dev did not stop within 30 s of Ctrl-C");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpis(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(CPIS)
        .args(args)
        .env("CPIS_DATA_DIR", data_dir)
        .env_remove("CPIS_ENDPOINT")
        .env_remove("CPIS_TLS_DIR")
        .env_remove("CPIS_TOKEN")
        .output()
        .expect("run cpis");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_first_run_builds_a_demo_whose_suggested_commands_work_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join(".cpis");

    let dev = Dev::start(&data);
    let printed = dev.until("Then:");
    let text = printed.join("\n");
    assert!(text.contains("first run"), "{text}");
    for service in [
        "identity",
        "flag-registry",
        "attendance",
        "notification",
        "audit",
    ] {
        assert!(text.contains(service), "{service} not announced: {text}");
    }

    // demo.json describes the demo for scripts.
    let demo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("demo.json")).expect("demo.json"))
            .expect("demo.json is JSON");
    let flagged = demo["nhs_numbers"]["cpp"][0].as_str().expect("a CPP child");
    let unflagged = demo["nhs_numbers"]["unflagged"][0]
        .as_str()
        .expect("an unflagged child");
    for kind in ["cpp", "lac", "ucpp"] {
        assert!(
            demo["nhs_numbers"][kind]
                .as_array()
                .is_some_and(|n| !n.is_empty()),
            "no {kind} numbers"
        );
    }
    assert!(demo["users"].as_array().is_some_and(|u| u.len() >= 5));

    // The three suggested commands.
    let (code, out) = cpis(&data, &["login", "ed.clinician"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cpis(&data, &["check", flagged, "--setting", "RJ1", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["flags"][0]["kind"], "child protection plan", "{out}");
    assert_eq!(
        answer["flags"][0]["contacts"]["emergency_duty_phone"],
        "020 7974 4444"
    );
    // The demo's first visit (the Royal Free) and this one.
    assert_eq!(
        answer["recent_attendances"].as_array().map(Vec::len),
        Some(2)
    );
    let (code, out) = cpis(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is signed"), "{out}");

    // An unflagged child is an ordinary answer; a bad number is a usage error.
    let (code, out) = cpis(&data, &["check", unflagged, "--setting", "RJ1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No child protection information"), "{out}");
    let (code, out) = cpis(&data, &["check", "1234567890", "--setting", "RJ1"]);
    assert_eq!(code, 2, "{out}");

    // The authority's inbox has the attendance.
    let (code, out) = cpis(&data, &["login", "camden.social"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cpis(&data, &["notifications", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let inbox: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        inbox["notifications"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["nhs_number"] == flagged)),
        "{out}"
    );

    // The authority hears of checks through the outbox: `cpis bench notify` times it.
    let (code, out) = cpis(&data, &["login", "ed.clinician"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cpis(
        &data,
        &["--json", "bench", "notify", "--checks", "5", "--rate", "20"],
    );
    assert_eq!(code, 0, "{out}");
    let timed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(timed["heard"], 5, "{out}");
    assert_eq!(timed["not_heard_within_30s"], 0, "{out}");

    // Ctrl-C stops it cleanly.
    assert!(dev.interrupt().success());

    // A restart keeps everything: no new demo, and the child's history is still there.
    let dev = Dev::start(&data);
    let text = dev.until("Then:").join("\n");
    assert!(!text.contains("first run"), "{text}");
    let (code, out) = cpis(&data, &["login", "ed.clinician"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cpis(&data, &["check", flagged, "--setting", "RJ1", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    // The two before, three of the bench's five (it alternates two Camden children), this.
    assert_eq!(
        answer["recent_attendances"].as_array().map(Vec::len),
        Some(6)
    );
    assert!(dev.interrupt().success());
}
