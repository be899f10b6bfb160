//! `cpis bench check` as an operator runs it: the real binary against real identity,
//! flag-registry and attendance servers, in process on real sockets with mTLS, on Postgres.
//! Only counts are asserted, never timings.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cpis_attendance::AttendanceSection;
use cpis_flag_registry::FlagsSection;
use cpis_flag_registry::demographics::FixedRegister;
use cpis_identity::IdentitySection;
use cpis_identity::audit::AuditActor;
use cpis_identity::directory::import::import_directory;
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::{TestPki, postgres_database};
use cpis_mesh::token::IdentityKeys;
use cpis_mesh::{Config, MeshContext, RunningServer, Shutdown};
use cpis_proto::common;
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{FlagRecord, UpsertFlagRequest};
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use cpis_proto::identity::{IssueTokenRequest, TraceOutcome};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
const KEK: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
const DIRECTORY: &str = r#"
version: 1
organisations:
  - code: RJ1
    name: Guy's and St Thomas'
    kind: health
    care_settings:
      - site: RJ122
        type: EMERGENCY_DEPARTMENT
  - code: E09000007
    name: London Borough of Camden
    kind: local_authority
    contacts:
      office_hours_phone: 020 7974 3317
      emergency_duty_phone: 020 7974 4444
      secure_email: mash@camden.gov.uk
users:
  - user_id: u-nurse
    username: nurse.jones
    display_name: Nurse Jones
    initial_credential: correct horse battery
    role_profiles:
      - id: rp-nurse
        organisation: RJ1
        role: clinician
  - user_id: u-social
    username: sw.patel
    display_name: Sam Patel
    initial_credential: correct horse battery
    role_profiles:
      - id: rp-social
        organisation: E09000007
        role: social_worker
"#;

/// Two flagged children and one without a flag (valid synthetic-looking numbers).
const FLAGGED: [&str; 2] = ["9434765919", "9434765870"];
const UNFLAGGED: &str = "9434765927";

/// The three services, running.
struct Mesh {
    pki: TestPki,
    identity: RunningServer,
    flags: RunningServer,
    attendance: RunningServer,
    attendance_db: Database,
    _servers: Vec<MeshContext>,
}

async fn database(url: &str, migrations: &cpis_mesh::db::Migrations) -> Database {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(migrations).await.unwrap();
    db
}

fn context(pki: &TestPki, name: &'static str) -> MeshContext {
    MeshContext::new(pki.mesh_config(name), Metrics::new(), Shutdown::new()).unwrap()
}

fn channel(pki: &TestPki, files: &cpis_mesh::tls::TlsFiles, port: u16) -> MeshChannel {
    cpis_mesh::client::channel(
        &format!("https://localhost:{port}"),
        &pki.tls(files),
        &Metrics::new(),
        &ChannelSettings::default(),
    )
    .unwrap()
}

async fn start() -> Mesh {
    start_with(&[], None).await
}

/// Starts the three services on Postgres; `extra` children are known to the person
/// register; with `redis`, the flag registry caches in it.
async fn start_with(extra: &[String], redis: Option<String>) -> Mesh {
    let pki = TestPki::new();

    let identity_ctx = context(&pki, "identity");
    let config = Config {
        mesh: (*identity_ctx.config).clone(),
        service: IdentitySection {
            database_url: postgres_database().await,
            key_encryption_key: Some(KEK.to_owned()),
            audit_address: String::new(),
            ..IdentitySection::default()
        },
    };
    let (parts, handle) = cpis_identity::build(&identity_ctx, &config).await.unwrap();
    let identity = cpis_mesh::start(&identity_ctx, parts).await.unwrap();
    import_directory(
        handle.state.store.as_ref(),
        &handle.state.hasher,
        12,
        DIRECTORY,
        false,
        &AuditActor::tool("test"),
    )
    .await
    .unwrap();
    let identity_url = format!("https://localhost:{}", identity.addr.port());

    // Both services verify users' tokens with identity's keys, fetched over mTLS.
    let flags_ctx = context(&pki, "flag-registry");
    let flags_url = postgres_database().await;
    let flags_db = database(&flags_url, &cpis_flag_registry::MIGRATIONS).await;
    let mut register = FixedRegister::default();
    for number in FLAGGED.iter().chain([&UNFLAGGED]) {
        register = register.with(number, TraceOutcome::Matched, None);
    }
    for number in extra {
        register = register.with(number, TraceOutcome::Matched, None);
    }
    let keys = IdentityKeys::new(flags_ctx.channel(&identity_url).unwrap());
    let state = cpis_flag_registry::state(
        &flags_ctx,
        &FlagsSection {
            database_url: flags_url,
            redis_key_prefix: format!("cpis:test:{}:", uuid::Uuid::new_v4().simple()),
            redis_url: redis,
            ..FlagsSection::default()
        },
        &flags_db,
        flags_ctx.token_verifier(Arc::new(keys)),
        Arc::new(register),
    )
    .unwrap();
    let flags = cpis_mesh::start(
        &flags_ctx,
        cpis_flag_registry::parts(&flags_ctx, Arc::new(state)),
    )
    .await
    .unwrap();

    let attendance_ctx = context(&pki, "attendance");
    let section = AttendanceSection {
        database_url: postgres_database().await,
        identity_url: identity_url.clone(),
        flags_url: format!("https://localhost:{}", flags.addr.port()),
        // No audit or notification here: their events wait in the outbox.
        audit_address: String::new(),
        notification_address: String::new(),
        ..AttendanceSection::default()
    };
    let attendance_db = database(&section.database_url, &cpis_attendance::MIGRATIONS).await;
    let keys = IdentityKeys::new(attendance_ctx.channel(&identity_url).unwrap());
    let parts = cpis_attendance::parts(
        &attendance_ctx,
        &section,
        &attendance_db,
        attendance_ctx.token_verifier(Arc::new(keys)),
    )
    .unwrap();
    let attendance = cpis_mesh::start(&attendance_ctx, parts).await.unwrap();
    Mesh {
        pki,
        identity,
        flags,
        attendance,
        attendance_db,
        _servers: vec![identity_ctx, flags_ctx, attendance_ctx],
    }
}

impl Mesh {
    /// Signs `username` in through `ods`'s system `system`.
    async fn sign_in(&self, ods: &str, system: &str, username: &str) -> String {
        let files = self.pki.org_system(ods, system);
        let mut client =
            IdentityServiceClient::new(channel(&self.pki, &files, self.identity.addr.port()));
        client
            .issue_token(IssueTokenRequest {
                username: username.to_owned(),
                credential: PASSWORD.to_owned(),
                role_profile_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .access_token
    }

    /// Camden flags `number` with a current child protection plan.
    async fn flag(&self, token: &str, case: &str, number: &str) {
        let files = self.pki.org_system("E09000007", "case");
        let mut client =
            FlagRegistryServiceClient::new(channel(&self.pki, &files, self.flags.addr.port()));
        let mut request = tonic::Request::new(UpsertFlagRequest {
            authority: Some(common::LocalAuthority {
                code: Some(common::OdsCode {
                    value: "E09000007".into(),
                }),
                name: "London Borough of Camden".into(),
            }),
            contacts: Some(common::AuthorityContacts {
                office_hours_phone: "020 7974 3317".into(),
                emergency_duty_phone: "020 7974 4444".into(),
                secure_email: "mash@camden.gov.uk".into(),
            }),
            record: Some(FlagRecord {
                case_reference: case.into(),
                nhs_number: Some(common::NhsNumber {
                    value: number.into(),
                }),
                kind: common::FlagKind::ChildProtectionPlan as i32,
                start_date: Some(common::Date {
                    year: 2025,
                    month: 1,
                    day: 6,
                }),
                ..FlagRecord::default()
            }),
            expected_version: None,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        client.upsert_flag(request).await.unwrap();
    }

    async fn attendances(&self) -> i64 {
        let Database::Postgres(pool) = &self.attendance_db else {
            unreachable!("the test runs on Postgres")
        };
        sqlx::query_scalar("SELECT COUNT(*) FROM attendances")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// `cpis [--json] bench <remote flags> check <args>` as the nurse's EHR.
    async fn bench(&self, token: &str, data_dir: &Path, json: bool, args: &[&str]) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cpis"));
        if json {
            command.arg("--json");
        }
        command
            .args(["bench", "--endpoint"])
            .arg(format!("https://localhost:{}", self.attendance.addr.port()))
            .arg("--tls-dir")
            .arg(self.pki.dir.path().join("org-RJ1-ehr"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--token", token, "check"])
            .args(args)
            .env_remove("CPIS_TOKEN")
            .env_remove("CPIS_ENDPOINT");
        // The servers run on this runtime: wait for the process off it.
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "cpis bench check {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The mesh with Camden's two flags, and the nurse's token.
async fn start_flagged() -> (Mesh, String) {
    let mesh = start().await;
    let social = mesh.sign_in("E09000007", "case", "sw.patel").await;
    for (i, number) in FLAGGED.iter().enumerate() {
        mesh.flag(&social, &format!("CAM-{i}"), number).await;
    }
    // The nurse's EHR certificate signs in, as `cpis login` would.
    let _ = mesh.pki.org_system("RJ1", "ehr");
    let nurse = mesh.sign_in("RJ1", "ehr", "nurse.jones").await;
    (mesh, nurse)
}

/// `--nhs-number` for each of the three children.
const CHILDREN: [&str; 6] = [
    "--nhs-number",
    FLAGGED[0],
    "--nhs-number",
    FLAGGED[1],
    "--nhs-number",
    UNFLAGGED,
];

#[tokio::test(flavor = "multi_thread")]
async fn a_short_run_reports_every_check_answered_without_errors() {
    let (mesh, nurse) = start_flagged().await;
    let data_dir = tempfile::tempdir().unwrap();

    let text = mesh
        .bench(
            &nurse,
            data_dir.path(),
            true,
            &[
                "--requests",
                "50",
                "--concurrency",
                "4",
                "--nhs-number",
                FLAGGED[0],
                "--nhs-number",
                FLAGGED[1],
                "--nhs-number",
                UNFLAGGED,
            ],
        )
        .await;
    let report: Value = serde_json::from_str(&text).unwrap();
    let check = &report["check"];
    assert_eq!(check["requests"], 50, "{report:#}");
    assert_eq!(check["ok"], 50, "{report:#}");
    assert_eq!(check["errors"], 0, "{report:#}");
    assert_eq!(check["errors_by_code"], serde_json::json!({}));
    // Round robin over three children, two flagged: 34 of the 50 answers show a flag.
    assert_eq!(check["flagged_answers"], 34, "{report:#}");
    assert_eq!(check["unflagged_answers"], 16);
    assert_eq!(report["organisation"], "RJ1");
    assert_eq!(report["concurrency"], 4);
    assert!(report["baseline"].is_null());
    assert!(
        report["open_loop"].is_null(),
        "closed loop only: {report:#}"
    );
    for key in ["p50", "p90", "p95", "p99", "max", "mean"] {
        assert!(check["latency_ms"][key].is_number(), "{key}: {report:#}");
    }
    assert_eq!(
        mesh.attendances().await,
        34,
        "the flagged children's checks were kept"
    );

    // The demo's children, by kind, with the health baseline, as text.
    std::fs::write(
        data_dir.path().join("demo.json"),
        format!(
            r#"{{"nhs_numbers": {{"cpp": ["{}", "{}"], "unflagged": ["{UNFLAGGED}"]}}}}"#,
            FLAGGED[0], FLAGGED[1]
        ),
    )
    .unwrap();
    let json = mesh
        .bench(
            &nurse,
            data_dir.path(),
            true,
            &["--requests", "20", "--connections", "2", "--baseline"],
        )
        .await;
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["check"]["ok"], 20, "{report:#}");
    assert_eq!(report["check"]["errors"], 0, "{report:#}");
    assert_eq!(report["baseline"]["ok"], 20, "{report:#}");
    assert_eq!(report["baseline"]["errors"], 0, "{report:#}");
    assert!(report["check_to_baseline_ratio"].is_number(), "{report:#}");

    let text = mesh
        .bench(&nurse, data_dir.path(), false, &["--requests", "5"])
        .await;
    assert!(text.contains("5 requests"), "{text}");
    assert!(text.contains("requests/s"), "{text}");
    assert!(text.contains("p99"), "{text}");
}

#[test]
fn without_children_to_check_it_says_what_to_pass() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(["bench", "--token", "x.e30.y", "--data-dir"])
        .arg(data_dir.path())
        .args(["check", "--requests", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--nhs-number"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_loop_run_sends_on_schedule_and_half_peak_reports_both_phases() {
    let (mesh, nurse) = start_flagged().await;
    let data_dir = tempfile::tempdir().unwrap();

    // 20 checks/s for 2 s: the checks due at 0, 50 ms, ..., 1950 ms; then the health RPC
    // at the same rate.
    let args = [
        &["--rate", "20", "--duration", "2s", "--baseline"][..],
        &CHILDREN,
    ]
    .concat();
    let text = mesh.bench(&nurse, data_dir.path(), true, &args).await;
    let report: Value = serde_json::from_str(&text).unwrap();
    assert!(report["check"].is_null(), "no closed loop: {report:#}");
    assert!(report["baseline"].is_null(), "{report:#}");
    assert!(report["check_to_baseline_ratio"].is_null(), "{report:#}");
    assert_eq!(report["concurrency"], 64, "{report:#}");
    let open = &report["open_loop"];
    assert_eq!(
        open["rpc"],
        "cpis.attendance.v1.AttendanceService/RecordAttendance"
    );
    assert_eq!(open["rate_from"], "--rate");
    assert_eq!(open["offered_rate"], 20.0, "{report:#}");
    assert_eq!(open["max_in_flight"], 64, "{report:#}");
    assert_eq!(open["latency_from"], "scheduled send time");
    assert_eq!(open["requests"], 40, "{report:#}");
    assert_eq!(open["ok"], 40, "{report:#}");
    assert_eq!(open["errors"], 0, "{report:#}");
    assert_eq!(open["errors_by_code"], serde_json::json!({}));
    // Round robin over three children, two flagged.
    assert_eq!(open["flagged_answers"], 27, "{report:#}");
    // However slow the machine, the schedule never runs ahead: the last check is due at
    // 1.95 s.
    let elapsed = open["elapsed_seconds"].as_f64().unwrap();
    assert!(elapsed >= 1.95, "{report:#}");
    let achieved = open["achieved_rate"].as_f64().unwrap();
    assert!(achieved > 0.0 && achieved <= 20.0, "{report:#}");
    assert_eq!(open["unsent"], 0, "{report:#}");
    for key in ["late", "waited_for_in_flight_cap", "max_behind_schedule_ms"] {
        assert!(open[key].is_number(), "{key}: {report:#}");
    }
    for key in ["p50", "p90", "p95", "p99", "max", "mean"] {
        assert!(open["latency_ms"][key].is_number(), "{key}: {report:#}");
    }
    let health = &open["baseline"];
    assert_eq!(health["rpc"], "grpc.health.v1.Health/Check", "{report:#}");
    assert_eq!(health["requests"], 40, "{report:#}");
    assert_eq!(health["ok"], 40, "{report:#}");
    assert_eq!(health["offered_rate"], 20.0, "{report:#}");

    // Issue 6's two figures from one command: the closed-loop peak, then half of it.
    let args = [
        &[
            "--rate",
            "half-peak",
            "--duration",
            "1s",
            "--concurrency",
            "2",
        ][..],
        &CHILDREN,
    ]
    .concat();
    let text = mesh.bench(&nurse, data_dir.path(), true, &args).await;
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["concurrency"], 2, "{report:#}");
    let check = &report["check"];
    assert_eq!(check["errors"], 0, "{report:#}");
    let peak_requests = check["requests"].as_u64().unwrap();
    assert!(peak_requests > 0, "{report:#}");
    let peak = check["requests_per_second"].as_f64().unwrap();
    let open = &report["open_loop"];
    assert_eq!(open["rate_from"], "half the closed-loop peak", "{report:#}");
    assert_eq!(open["max_in_flight"], 64, "{report:#}");
    let offered = open["offered_rate"].as_f64().unwrap();
    assert!((offered - peak / 2.0).abs() <= 0.1, "{report:#}");
    assert_eq!(open["errors"], 0, "{report:#}");
    // The checks due in 1 s at half the peak: about half the closed loop's in 1 s.
    let sent = open["requests"].as_f64().unwrap();
    assert!((sent - offered).abs() <= 2.0, "{report:#}");
    assert!(open["latency_ms"]["p99"].is_number(), "{report:#}");

    // Far more than one check in flight can answer: the run still ends with --duration,
    // and every check due is either sent or counted as unsent.
    let args = [
        &["--rate", "100000", "--duration", "1s", "--concurrency", "1"][..],
        &CHILDREN,
    ]
    .concat();
    let text = mesh.bench(&nurse, data_dir.path(), true, &args).await;
    let report: Value = serde_json::from_str(&text).unwrap();
    let open = &report["open_loop"];
    assert_eq!(open["max_in_flight"], 1, "{report:#}");
    assert_eq!(open["errors"], 0, "{report:#}");
    let sent = open["requests"].as_u64().unwrap();
    let unsent = open["unsent"].as_u64().unwrap();
    assert!(sent > 0 && unsent > 0, "{report:#}");
    assert_eq!(sent + unsent, 100_000, "{report:#}");
    assert!(
        open["waited_for_in_flight_cap"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(open["late"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        open["achieved_rate"].as_f64().unwrap() < 100_000.0,
        "{report:#}"
    );

    // As text.
    let args = [&["--rate", "10", "--requests", "5"][..], &CHILDREN].concat();
    let text = mesh.bench(&nurse, data_dir.path(), false, &args).await;
    assert!(text.contains("at most 64 in flight"), "{text}");
    assert!(text.contains("open loop at 10.0 checks/s"), "{text}");
    assert!(text.contains("5 requests"), "{text}");
    assert!(text.contains("behind schedule"), "{text}");
    assert!(text.contains("p99"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn latencies_lists_every_check_of_the_open_loop_with_its_scheduled_time() {
    let (mesh, nurse) = start_flagged().await;
    let data_dir = tempfile::tempdir().unwrap();
    let file = data_dir.path().join("latencies.tsv");
    let file_arg = file.to_str().unwrap();

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    // 20 checks/s, ten of them (due 50 ms apart), then the health RPC: not listed.
    let args = [
        &[
            "--rate",
            "20",
            "--requests",
            "10",
            "--baseline",
            "--latencies",
            file_arg,
        ][..],
        &CHILDREN,
    ]
    .concat();
    let text = mesh.bench(&nurse, data_dir.path(), true, &args).await;
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["open_loop"]["ok"], 10, "{report:#}");

    let written = std::fs::read_to_string(&file).unwrap();
    let mut lines = written.lines();
    assert_eq!(
        lines.next(),
        Some("scheduled_unix_us\tlatency_us\tcode\tsent_after_us")
    );
    let rows: Vec<(u128, u128, &str, u128)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "{line}");
            (
                fields[0].parse().unwrap(),
                fields[1].parse().unwrap(),
                fields[2],
                fields[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 10, "{written}");
    for (at, latency, code, sent_after) in &rows {
        assert_eq!(*code, "OK");
        assert!(*latency > 0);
        assert!(before <= *at && at + latency <= after, "{written}");
        // Sent after its time, and answered after it was sent.
        assert!(sent_after < latency, "{written}");
    }
    // Due 50 ms apart, to the microsecond: the schedule, not when they happened to go.
    for pair in rows.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 50_000, "{written}");
    }
    // The mean of the listed latencies is the report's.
    let mean_ms = rows.iter().map(|r| r.1).sum::<u128>() as f64 / 10.0 / 1000.0;
    let reported = report["open_loop"]["latency_ms"]["mean"].as_f64().unwrap();
    assert!(
        (mean_ms - reported).abs() < 0.01,
        "{mean_ms} against {reported}"
    );
}

#[test]
fn latencies_without_a_rate_is_refused_before_anything_is_sent() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(["bench", "--token", "x.e30.y", "--data-dir"])
        .arg(data_dir.path())
        .args(["check", "--requests", "1", "--latencies"])
        .arg(data_dir.path().join("latencies.tsv"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rate"), "{stderr}");
    assert!(!data_dir.path().join("latencies.tsv").exists());
}
