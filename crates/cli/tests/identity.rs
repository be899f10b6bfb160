//! `cpis identity ...` as a user runs it: the real binary on an SQLite file and on a fresh
//! Postgres database. Imports are idempotent; a bad file changes nothing.

use std::path::Path;
use std::process::{Command, Output};

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
      emergency_duty_phone: 020 7974 4444
users:
  - username: admin.lee
    display_name: Alex Lee
    initial_credential: correct horse battery
    role_profiles:
      - organisation: RJ1
        role: administrator
"#;

fn cpis(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpis"))
        .arg("identity")
        .args(args)
        .env("CPIS_IDENTITY_DATABASE_URL", database_url)
        .output()
        .expect("cpis runs")
}

fn ok(database_url: &str, args: &[&str]) -> String {
    let output = cpis(database_url, args);
    assert!(
        output.status.success(),
        "cpis identity {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn exercise(database_url: &str, dir: &Path) {
    let file = dir.join("directory.yaml");
    std::fs::write(&file, DIRECTORY).unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        ok(database_url, &["import", "--validate-only", file]).trim(),
        "directory would import: 4 created, 0 updated, 0 unchanged"
    );
    assert_eq!(
        ok(database_url, &["import", file]).trim(),
        "directory imported: 4 created, 0 updated, 0 unchanged"
    );
    assert_eq!(
        ok(database_url, &["import", file]).trim(),
        "directory imported: 0 created, 0 updated, 4 unchanged"
    );
    let exported = ok(database_url, &["export"]);
    assert!(exported.contains("username: admin.lee"), "{exported}");
    assert!(exported.contains("$argon2id$"));
    let export_file = dir.join("export.yaml");
    ok(
        database_url,
        &["export", "--out", export_file.to_str().unwrap()],
    );
    // 5 default roles, 2 organisations, 1 user, 1 role profile: all as they are.
    assert_eq!(
        ok(database_url, &["import", export_file.to_str().unwrap()]).trim(),
        "directory imported: 0 created, 0 updated, 9 unchanged"
    );

    assert_eq!(
        ok(database_url, &["seed-persons", "--count", "300"]).trim(),
        "persons seeded: 300 created, 0 updated, 0 unchanged"
    );
    assert_eq!(
        ok(database_url, &["seed-persons", "--count", "350"]).trim(),
        "persons seeded: 50 created, 0 updated, 300 unchanged"
    );

    let csv = dir.join("persons.csv");
    std::fs::write(
        &csv,
        "nhs_number,date_of_birth,status,superseded_by,sensitive\n\
         943 476 5919,2015-06-01,active,,false\n\
         9434765870,2016-01-31,superseded,9434765919,\n",
    )
    .unwrap();
    let csv = csv.to_str().unwrap();
    assert_eq!(
        ok(database_url, &["import-persons", csv]).trim(),
        "persons imported: 2 created, 0 updated, 0 unchanged"
    );
    assert_eq!(
        ok(database_url, &["import-persons", csv]).trim(),
        "persons imported: 0 created, 0 updated, 2 unchanged"
    );

    // A bad line names itself, and nothing of the file is written.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "9999999999,2015-06-01,,,\n9434765918,2015-06-01,,,\n").unwrap();
    let output = cpis(database_url, &["import-persons", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: nhs_number"), "{stderr}");
    let good_only = dir.join("good.csv");
    std::fs::write(&good_only, "9999999999,2015-06-01,,,\n").unwrap();
    assert_eq!(
        ok(
            database_url,
            &["import-persons", good_only.to_str().unwrap()]
        )
        .trim(),
        "persons imported: 1 created, 0 updated, 0 unchanged"
    );

    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "version: 1\nusers:\n  - username: x\n    display_name: X\n",
    )
    .unwrap();
    let output = cpis(database_url, &["import", broken.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("users[0].credential_hash"), "{stderr}");
}

#[test]
fn identity_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir.path(), "identity");
    exercise(&url, dir.path());
}

#[test]
fn identity_commands_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(cpis_mesh::testkit::postgres_database());
    exercise(&url, dir.path());
}

/// The example of docs/directory-format.md imports as it says, and so does its CSV.
#[test]
fn the_documented_examples_import() {
    let doc = include_str!("../../../docs/directory-format.md");
    let block = |fence: &str| {
        let start = doc.find(fence).expect("the example is in the doc") + fence.len();
        doc[start..][..doc[start..].find("```").unwrap()].to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = cpis_mesh::testkit::sqlite_database(dir.path(), "identity");
    let yaml = dir.path().join("directory.yaml");
    std::fs::write(&yaml, block("```yaml\n")).unwrap();
    let csv = dir.path().join("persons.csv");
    std::fs::write(&csv, block("```csv\n")).unwrap();
    let yaml = yaml.to_str().unwrap();
    assert_eq!(
        ok(&url, &["import", yaml]).trim(),
        "directory imported: 8 created, 0 updated, 0 unchanged"
    );
    assert_eq!(
        ok(&url, &["import", yaml]).trim(),
        "directory imported: 0 created, 0 updated, 8 unchanged"
    );
    assert_eq!(
        ok(&url, &["import-persons", csv.to_str().unwrap()]).trim(),
        "persons imported: 3 created, 0 updated, 0 unchanged"
    );
}
