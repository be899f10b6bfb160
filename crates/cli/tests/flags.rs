//! `cpis flags ...` as a local authority runs it: the real binary against a real flag
//! registry and identity (its person register traces the records) in process, on real
//! sockets with mTLS, over Postgres.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cpis_domain::{NhsNumber, PersonStatus};
use cpis_flag_registry::FlagsSection;
use cpis_flag_registry::demographics::IdentityRegister;
use cpis_identity::IdentitySection;
use cpis_identity::audit::AuditActor;
use cpis_identity::persons::Person;
use cpis_mesh::client::ChannelSettings;
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::{TestPki, postgres_database};
use cpis_mesh::token::{Claims, StaticKeys, TokenSigner, TokenVerifier};
use cpis_mesh::{Config, MeshContext, RunningServer, Shutdown};

/// The key encryption key of identity in tests.
const KEK: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
const CAMDEN: &str = "E09000007";

/// The `n`th synthetic NHS number (999 prefix, valid check digit).
fn nhs(n: u32) -> String {
    let mut candidate = 999_000_000 + n * 13;
    loop {
        let digits: Vec<u8> = candidate.to_string().bytes().map(|b| b - b'0').collect();
        let prefix: [u8; 9] = digits.try_into().unwrap();
        if let Some(number) = NhsNumber::from_prefix(&prefix) {
            return number.as_str().to_owned();
        }
        candidate += 1;
    }
}

fn person(number: &str, status: PersonStatus, sensitive: bool) -> Person {
    Person {
        nhs_number: NhsNumber::parse(number).unwrap(),
        date_of_birth: time::Date::from_calendar_date(2015, time::Month::June, 1).unwrap(),
        status,
        sensitive,
    }
}

/// Identity and the flag registry, and what the command needs to reach them.
struct Mesh {
    _identity: RunningServer,
    _flags: RunningServer,
    _pki: TestPki,
    dir: tempfile::TempDir,
    endpoint: String,
    tls_dir: PathBuf,
    token: String,
}

/// nhs(1..=3) active, nhs(4) sensitive, nhs(5) superseded by nhs(1); nobody has nhs(6).
async fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();

    let config = Config {
        mesh: pki.mesh_config("identity"),
        service: IdentitySection {
            database_url: cpis_mesh::testkit::sqlite_database(dir.path(), "identity"),
            key_encryption_key: Some(KEK.to_owned()),
            audit_address: String::new(),
            ..IdentitySection::default()
        },
    };
    let ctx = MeshContext::new(config.mesh.clone(), Metrics::new(), Shutdown::new()).unwrap();
    let (parts, handle) = cpis_identity::build(&ctx, &config).await.unwrap();
    let identity = cpis_mesh::start(&ctx, parts).await.unwrap();
    let by = NhsNumber::parse(&nhs(1)).unwrap();
    cpis_identity::persons::import(
        handle.state.store.as_ref(),
        &AuditActor::tool("test"),
        &[
            person(&nhs(1), PersonStatus::Active, false),
            person(&nhs(2), PersonStatus::Active, false),
            person(&nhs(3), PersonStatus::Active, false),
            person(&nhs(4), PersonStatus::Active, true),
            person(&nhs(5), PersonStatus::Superseded { by }, false),
        ],
    )
    .await
    .unwrap();

    let db_url = postgres_database().await;
    let ctx = MeshContext::new(
        pki.mesh_config("flag-registry"),
        Metrics::new(),
        Shutdown::new(),
    )
    .unwrap();
    let db = Database::connect(&DatabaseSettings::new(&db_url))
        .await
        .unwrap();
    db.migrate(&cpis_flag_registry::MIGRATIONS).await.unwrap();
    let users = TokenSigner::generate("users-1").unwrap().0;
    let tokens = TokenVerifier::new(
        Arc::new(StaticKeys(vec![users.verification_key()])),
        (&ctx.config.tokens).into(),
    );
    // The registry traces through identity as the flag-registry workload, as in the mesh.
    let to_identity = cpis_mesh::client::channel(
        &format!("https://localhost:{}", identity.addr.port()),
        &pki.tls(&pki.workload("flag-registry")),
        &Metrics::new(),
        &ChannelSettings::default(),
    )
    .unwrap();
    let section = FlagsSection {
        database_url: db_url,
        audit_address: String::new(),
        ..FlagsSection::default()
    };
    let state = cpis_flag_registry::state(
        &ctx,
        &section,
        &db,
        tokens,
        Arc::new(IdentityRegister::new(to_identity)),
    )
    .unwrap();
    let flags = cpis_mesh::start(&ctx, cpis_flag_registry::parts(&ctx, Arc::new(state)))
        .await
        .unwrap();

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = users.sign(&Claims {
        iss: ctx.config.tokens.issuer.clone(),
        sub: "u-social".into(),
        aud: ctx.config.tokens.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: "t".into(),
        org: CAMDEN.into(),
        rp: "rp-social".into(),
        role: "social-worker".into(),
        act: vec!["flag.manage".into()],
    });
    let system = pki.org_system(CAMDEN, "case-system");
    Mesh {
        endpoint: format!("https://localhost:{}", flags.addr.port()),
        tls_dir: system.ca.parent().unwrap().to_owned(),
        _identity: identity,
        _flags: flags,
        _pki: pki,
        dir,
        token,
    }
}

/// What a run of the command did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Mesh {
    /// Runs `cpis flags <args>` against the mesh, off the runtime's threads.
    async fn cpis(&self, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cpis"));
        command
            .arg("flags")
            .args(args)
            .args(["--endpoint", &self.endpoint, "--tls-dir"])
            .arg(&self.tls_dir)
            .arg("--data-dir")
            .arg(self.dir.path().join("cli"))
            .env("CPIS_TOKEN", &self.token)
            .env_remove("CPIS_ENDPOINT")
            .env_remove("CPIS_TLS_DIR");
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// Writes a file into the test's directory.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Uploads `file` as Camden with the name and emergency phone given.
    async fn upload(&self, file: &str, sequence: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "upload",
            "--file",
            file,
            "--sequence",
            sequence,
            "--authority",
            CAMDEN,
            "--authority-name",
            "London Borough of Camden",
            "--emergency-duty-phone",
            "020 7974 4444",
        ];
        args.extend_from_slice(extra);
        self.cpis(&args).await
    }

    /// Camden's flags, as `cpis flags list --all --json` prints them.
    async fn flags(&self) -> Vec<serde_json::Value> {
        let run = self
            .cpis(&["list", "--all", "--authority", CAMDEN, "--json"])
            .await;
        assert_eq!(run.code, 0, "{run:?}");
        let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        answer["flags"].as_array().unwrap().clone()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_reports_every_record_and_applies_the_good_ones() {
    let mesh = mesh().await;
    // CRLF line ends, a byte order mark, a quoted case reference with a comma.
    let csv = format!(
        "\u{feff}case_reference,nhs_number,kind,legal_basis,start_date,end_date\r\n\
         C-1,{one},CPP,,2026-03-01,\r\n\
         \"C,2\",{two},LAC,S31,2026-02-01,\r\n\
         C-3,{sensitive},CPP,,2026-03-01,\r\n\
         C-4,{nobody},CPP,,2026-03-01,\r\n\
         C-5,123,CPP,,2026-03-01,\r\n\
         C-6,{superseded},CPP,,2026-03-01,\r\n\
         C-7,{three},CPP,,2026-03-01,2026-01-01\r\n",
        one = nhs(1),
        two = nhs(2),
        sensitive = nhs(4),
        nobody = nhs(6),
        superseded = nhs(5),
        three = nhs(3),
    );
    let file = mesh.file("plans.csv", &csv);
    let run = mesh.upload(&file, "1", &[]).await;
    // Partial: applied, and exit code 1 because some records were not stored.
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("plans.csv: PARTIAL (sequence 1, incremental"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("7 records: 3 stored (1 under a superseding number), 2 refused, 2 invalid"),
        "{run:?}"
    );
    assert!(run.stderr.contains("4 records were not stored"), "{run:?}");
    let report = read(Path::new(&format!("{file}.report.csv")));
    assert_eq!(
        report,
        format!(
            "line,case_reference,outcome,detail\n\
             2,C-1,STORED,\n\
             3,\"C,2\",STORED,\n\
             4,C-3,SENSITIVE_REFUSED,the person's record is sensitive: refused\n\
             5,C-4,NO_MATCH,nobody in the person register has this NHS number\n\
             6,C-5,INVALID,\"nhs_number an NHS number has 10 digits, this one has 3\"\n\
             7,C-6,SUPERSEDED,the NHS number was superseded: stored under {one}\n\
             8,C-7,INVALID,end_date must not be before the start date\n",
            one = nhs(1)
        ),
        "{report}"
    );
    let flags = mesh.flags().await;
    let stored: Vec<&str> = flags
        .iter()
        .map(|f| f["case_reference"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["C,2", "C-1", "C-6"]);

    // The same sequence number again: the earlier report, nothing applied, exit code 7.
    let replay = mesh.file(
        "again.csv",
        "case_reference,nhs_number,kind,start_date\nZ,x,CPP,\n",
    );
    let run = mesh.upload(&replay, "1", &[]).await;
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stdout.contains("a replay"), "{run:?}");
    assert_eq!(mesh.flags().await.len(), 3);

    // A snapshot with --json and a named report: every record stored, C-1 ended.
    let snapshot = mesh.file(
        "snapshot.csv",
        &format!(
            "case_reference,nhs_number,kind,legal_basis,start_date\n\"C,2\",{two},LAC,S31,2026-02-01\n",
            two = nhs(2)
        ),
    );
    let named = mesh.dir.path().join("out.csv");
    let run = mesh
        .upload(
            &snapshot,
            "2",
            &[
                "--mode",
                "snapshot",
                "--report",
                named.to_str().unwrap(),
                "--json",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["outcome"], "SUCCESS");
    assert_eq!(summary["stored"], 1);
    assert_eq!(summary["mode"], "snapshot");
    assert_eq!(
        summary["ended_case_references"],
        serde_json::json!(["C-1", "C-6"])
    );
    assert_eq!(
        read(&named),
        "line,case_reference,outcome,detail\n2,\"C,2\",STORED,\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_file_is_refused_before_anything_is_sent() {
    let mesh = mesh().await;
    let cases = [
        (
            "quote.csv",
            format!(
                "case_reference,nhs_number,kind,start_date\nA,{},CPP,2026-03-01\nB,12\"3,CPP,2026-03-01\n",
                nhs(1)
            ),
            "line 3, column 2: a quote inside an unquoted field",
        ),
        (
            "header.csv",
            format!(
                "case_reference,nhs,kind,start_date\nA,{},CPP,2026-03-01\n",
                nhs(1)
            ),
            "line 1, column 2: `nhs` is not a column",
        ),
        (
            "count.csv",
            format!(
                "case_reference,nhs_number,kind,start_date\nA,{},CPP,2026-03-01\nB,CPP,2026-03-01\n",
                nhs(1)
            ),
            "line 3: 3 fields, but the header row has 4 columns",
        ),
        (
            "date.csv",
            format!(
                "case_reference,nhs_number,kind,start_date\nA,{},CPP,01/03/2026\n",
                nhs(1)
            ),
            "line 2, column 4: start_date `01/03/2026` is not a date written YYYY-MM-DD",
        ),
        (
            "open.csv",
            format!(
                "case_reference,nhs_number,kind,start_date\n\"A,{},CPP,2026-03-01\n",
                nhs(1)
            ),
            "line 2, column 1: a quoted field is not closed",
        ),
    ];
    for (name, text, expected) in cases {
        let file = mesh.file(name, &text);
        let run = mesh.upload(&file, "1", &[]).await;
        assert_eq!(run.code, 2, "{name}: {run:?}");
        assert!(run.stderr.contains(expected), "{name}: {run:?}");
        assert!(run.stderr.contains("nothing was sent"), "{name}: {run:?}");
        assert!(!Path::new(&format!("{file}.report.csv")).exists());
    }
    assert!(mesh.flags().await.is_empty());
    // The sequence number was not used up: a good file takes it.
    let good = mesh.file(
        "good.csv",
        &format!(
            "case_reference,nhs_number,kind,start_date\nA,{},CPP,2026-03-01\n",
            nhs(1)
        ),
    );
    let run = mesh.upload(&good, "1", &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("SUCCESS"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_list_and_end_round_trip() {
    let mesh = mesh().await;
    let who = [
        "--authority",
        CAMDEN,
        "--authority-name",
        "London Borough of Camden",
        "--emergency-duty-phone",
        "020 7974 4444",
    ];
    let one = nhs(1);
    let mut upsert = vec![
        "upsert",
        "--case-ref",
        "K-1",
        "--nhs-number",
        &one,
        "--kind",
        "cpp",
        "--start",
        "2026-03-01",
        "--version",
        "0",
    ];
    upsert.extend_from_slice(&who);
    let run = mesh.cpis(&upsert).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("created (STORED): CPP K-1 on"),
        "{run:?}"
    );
    // Creating it again when it exists is a conflict.
    let run = mesh.cpis(&upsert).await;
    assert_eq!(run.code, 7, "{run:?}");

    // Nobody has this number: refused, exit code 1.
    let nobody = nhs(6);
    let mut refused = vec![
        "upsert",
        "--case-ref",
        "K-2",
        "--nhs-number",
        &nobody,
        "--kind",
        "LAC",
        "--legal-basis",
        "S20",
        "--start",
        "2026-03-01",
        "--json",
    ];
    refused.extend_from_slice(&who);
    let run = mesh.cpis(&refused).await;
    assert_eq!(run.code, 1, "{run:?}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["outcome"], "NO_MATCH");

    let run = mesh
        .cpis(&[
            "end",
            "--case-ref",
            "K-1",
            "--end",
            "2026-04-01",
            "--delete-after",
            "2030-04-01",
            "--authority",
            CAMDEN,
            "--json",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let ended: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ended["flag"]["version"], 2);
    assert_eq!(ended["flag"]["end_date"], "2026-04-01");

    let run = mesh
        .cpis(&["list", "--authority", CAMDEN, "--kind", "CPP"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "case", "ref", "NHS", "number", "kind", "state", "start", "end", "version"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "K-1",
            one.as_str(),
            "CPP",
            "recently",
            "ended",
            "2026-03-01",
            "2026-04-01",
            "2"
        ]
    );
    let run = mesh
        .cpis(&["list", "--authority", CAMDEN, "--state", "current"])
        .await;
    assert!(
        run.stdout.contains("no flags of E09000007 match"),
        "{run:?}"
    );

    // An unknown flag is not found; a stale version a conflict.
    let run = mesh
        .cpis(&[
            "end",
            "--case-ref",
            "K-9",
            "--end",
            "2026-04-01",
            "--authority",
            CAMDEN,
        ])
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    let run = mesh
        .cpis(&[
            "end",
            "--case-ref",
            "K-1",
            "--end",
            "2026-05-01",
            "--version",
            "1",
            "--authority",
            CAMDEN,
        ])
        .await;
    assert_eq!(run.code, 7, "{run:?}");
}
