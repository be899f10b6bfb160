//! `cpis dev` as a newcomer runs it: the first run builds the demo and the three commands
//! it suggests work; Ctrl-C stops it cleanly; a second run keeps the data. And on Postgres
//! and Redis (`--postgres`, `--redis`), as the benchmark of docs/performance.md runs it.
//!
//! They bind the fixed dev ports (50051-50055, 9501-9505): stop any `cpis dev` of your own
//! before running them. They take turns: a lock here (`cargo test`), a test group in
//! `.config/nextest.toml` (nextest, which runs each test in its own process).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

const CPIS: &str = env!("CARGO_BIN_EXE_cpis");

/// Held by each test while its `cpis dev` holds the dev ports.
fn dev_ports() -> MutexGuard<'static, ()> {
    static PORTS: Mutex<()> = Mutex::new(());
    PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running `cpis dev`, the lines it printed and what it said on standard error.
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
}

impl Dev {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[], &[])
    }

    /// `cpis dev` with more arguments and variables.
    fn start_with(data_dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Self {
        let mut child = Command::new(CPIS)
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("CPIS_DATA_DIR")
            .env_remove("CPIS_DEV_POSTGRES")
            .env_remove("CPIS_DEV_REDIS")
            .env_remove("CPIS_DEV_DATABASE_PREFIX")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cpis dev");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, errors) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            errors,
        }
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
                Err(_) => {
                    // All of it when the process has exited; what came within 2 s otherwise.
                    let mut errors = Vec::new();
                    while let Ok(line) = self.errors.recv_timeout(Duration::from_secs(2)) {
                        errors.push(line);
                    }
                    panic!(
                        "cpis dev printed no `{marker}` (are ports 50051-50055 free?); it \
                         printed: {seen:#?}; on standard error: {errors:#?}"
                    )
                }
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
    let _ports = dev_ports();
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

/// The test Postgres server (`CPIS_TEST_DATABASE_URL` without its database) and Redis.
fn servers() -> (String, String) {
    let url = cpis_mesh::testkit::postgres_server_url();
    let server = match url.split_once("://") {
        Some((scheme, rest)) => format!(
            "{scheme}://{}",
            rest.split(['/', '?']).next().unwrap_or(rest)
        ),
        None => url,
    };
    let redis = std::env::var("CPIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    (server, redis)
}

/// Runs `sql` on database `name` of `server`; the first column of each row, as text.
fn query(server: &str, name: &str, sql: &str) -> Vec<String> {
    try_query(server, name, sql).unwrap_or_else(|e| panic!("{server}/{name}: {sql}: {e}"))
}

fn try_query(server: &str, name: &str, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::{Connection, Row};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(sqlx::Error::Io)?;
    runtime.block_on(async {
        let mut db = sqlx::PgConnection::connect(&format!("{server}/{name}")).await?;
        let rows = sqlx::query(sql).fetch_all(&mut db).await?;
        let _ = db.close().await;
        rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
    })
}

/// How many keys of the Redis at `url` match `pattern` (RESP by hand: one command).
fn redis_keys(url: &str, pattern: &str) -> usize {
    use std::io::{Read, Write};
    let address = url
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .and_then(|authority| authority.rsplit('@').next())
        .expect("a Redis address");
    let mut redis = std::net::TcpStream::connect(address).expect("Redis answers");
    redis
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let command = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
    redis.write_all(command.as_bytes()).expect("send KEYS");
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while !header.ends_with(b"\r\n") {
        redis.read_exact(&mut byte).expect("Redis replies");
        header.push(byte[0]);
    }
    let header = String::from_utf8_lossy(&header);
    header
        .strip_prefix('*')
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("KEYS replied {header}"))
}

/// Drops this test's databases, whatever happened (`scripts/test.sh` drops leftovers too).
struct DropDatabases {
    server: String,
    prefix: String,
}

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let names = try_query(
            &self.server,
            "postgres",
            &format!(
                "SELECT datname::text FROM pg_database WHERE datname LIKE '{}%'",
                self.prefix
            ),
        )
        .unwrap_or_default();
        for name in names {
            let _ = try_query(
                &self.server,
                "postgres",
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            );
        }
    }
}

#[test]
fn with_postgres_and_redis_the_data_goes_to_a_database_per_service() {
    let _ports = dev_ports();
    let (server, redis) = servers();
    let prefix = format!("cpis_test_dev_{}_", uuid::Uuid::new_v4().simple());
    let _cleanup = DropDatabases {
        server: server.clone(),
        prefix: prefix.clone(),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join(".cpis-pg");
    let args = ["--postgres", server.as_str(), "--redis", redis.as_str()];
    let vars = [("CPIS_DEV_DATABASE_PREFIX", prefix.as_str())];

    let dev = Dev::start_with(&data, &args, &vars);
    let text = dev.until("Then:").join("\n");
    assert!(text.contains("first run"), "{text}");
    assert!(text.contains("Postgres at"), "{text}");
    assert!(text.contains("Redis at"), "{text}");

    let demo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("demo.json")).expect("demo.json"))
            .expect("demo.json is JSON");
    let flagged = demo["nhs_numbers"]["cpp"][0].as_str().expect("a CPP child");
    let (code, out) = cpis(&data, &["login", "ed.clinician"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cpis(&data, &["check", flagged, "--setting", "RJ1", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["flags"][0]["kind"], "child protection plan", "{out}");
    assert_eq!(
        answer["recent_attendances"].as_array().map(Vec::len),
        Some(2),
        "{out}"
    );
    // Cached now: a second check answers the same (from Redis).
    let (code, out) = cpis(&data, &["check", flagged, "--setting", "RJ1", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["flags"][0]["kind"], "child protection plan", "{out}");

    // The data is in Postgres, one database per service, and no SQLite file was made.
    let databases = query(
        &server,
        "postgres",
        &format!("SELECT datname::text FROM pg_database WHERE datname LIKE '{prefix}%' ORDER BY 1"),
    );
    let expected = [
        "attendance",
        "audit",
        "flag_registry",
        "identity",
        "notification",
    ]
    .map(|s| format!("{prefix}{s}"));
    assert_eq!(databases, expected);
    let visits = query(
        &server,
        &format!("{prefix}attendance"),
        "SELECT count(*)::text FROM attendances",
    );
    assert_eq!(visits, ["3"], "the demo's visit and the two checks");
    let users = query(
        &server,
        &format!("{prefix}identity"),
        "SELECT count(*)::text FROM users",
    );
    assert_ne!(users, ["0"]);
    let sqlite = std::fs::read_dir(&data)
        .expect("the data directory")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "db"))
        .count();
    assert_eq!(sqlite, 0, "no SQLite databases under {}", data.display());
    let store: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("store.json")).expect("store.json"))
            .expect("store.json is JSON");
    assert_eq!(store["database_prefix"], prefix.as_str(), "{store}");
    assert_eq!(store["redis"], redis.as_str(), "{store}");
    // The flag registry's cache holds the checked child, under this directory's prefix.
    let key_prefix = store["redis_key_prefix"].as_str().expect("a key prefix");
    let cached = redis_keys(&redis, &format!("{key_prefix}*"));
    assert!(cached > 0, "no Redis keys under {key_prefix}");
    assert!(dev.interrupt().success());

    // The directory belongs to that store: a run on SQLite is refused, before it starts.
    let refused = Command::new(CPIS)
        .args(["dev", "--data-dir"])
        .arg(&data)
        .env_remove("CPIS_DATA_DIR")
        .env_remove("CPIS_DEV_POSTGRES")
        .env_remove("CPIS_DEV_REDIS")
        .output()
        .expect("run cpis dev");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("was created with Postgres") && stderr.contains("--reset"),
        "{stderr}"
    );

    // A restart on the same store keeps the data.
    let dev = Dev::start_with(&data, &args, &vars);
    let text = dev.until("Then:").join("\n");
    assert!(!text.contains("first run"), "{text}");
    let (code, out) = cpis(&data, &["login", "ed.clinician"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cpis(&data, &["check", flagged, "--setting", "RJ1", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        answer["recent_attendances"].as_array().map(Vec::len),
        Some(4),
        "{out}"
    );
    assert!(dev.interrupt().success());

    // `--reset` drops the databases and starts over.
    let dev = Dev::start_with(
        &data,
        &["--reset", args[0], args[1], args[2], args[3]],
        &vars,
    );
    let text = dev.until("Then:").join("\n");
    assert!(text.contains("first run"), "{text}");
    let visits = query(
        &server,
        &format!("{prefix}attendance"),
        "SELECT count(*)::text FROM attendances",
    );
    assert_eq!(visits, ["1"], "only the new demo's visit");
    assert!(dev.interrupt().success());
}
