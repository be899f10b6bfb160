//! `cpis audit verify` and `cpis audit prove` as an outside auditor runs them: a real
//! process against a real audit service over mTLS, before and after tampering.

use std::process::Command;
use std::sync::Arc;

use cpis_audit::AuditSection;
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::{TestPki, postgres_database};
use cpis_mesh::token::{Claims, StaticKeys, TokenSigner, TokenVerifier};
use cpis_mesh::{MeshContext, Shutdown};
use cpis_proto::audit::audit_service_client::AuditServiceClient;
use cpis_proto::audit::{Actor, AppendRequest, AuditEvent, AuditOutcome, actor};
use sqlx::Connection;

const SEED: &str = "11223344556677889900aabbccddeeff11223344556677889900aabbccddeeff";

fn event(i: i64) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_time: Some(prost_types::Timestamp {
            seconds: 1_760_000_000 + i,
            nanos: 0,
        }),
        actor: Some(Actor {
            kind: Some(actor::Kind::Workload("attendance".into())),
            calling_system: String::new(),
        }),
        action: "attendance.check".into(),
        outcome: AuditOutcome::Success as i32,
        reason: format!("check {i}"),
        ..Default::default()
    }
}

fn cpis(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_and_prove_pass_then_name_the_tampered_index() {
    let db_url = postgres_database().await;
    let pki = TestPki::new();
    let ctx = MeshContext::new(pki.mesh_config("audit"), Metrics::new(), Shutdown::new()).unwrap();
    let db = Database::connect(&DatabaseSettings::new(&db_url))
        .await
        .unwrap();
    db.migrate(&cpis_audit::MIGRATIONS).await.unwrap();
    let (users, _) = TokenSigner::generate("k1").unwrap();
    let tokens = TokenVerifier::new(
        Arc::new(StaticKeys(vec![users.verification_key()])),
        (&ctx.config.tokens).into(),
    );
    let section = AuditSection {
        database_url: db_url.clone(),
        checkpoint_key: Some(SEED.into()),
        ..AuditSection::default()
    };
    let server = cpis_mesh::start(
        &ctx,
        cpis_audit::parts(&ctx, &section, &db, tokens).unwrap(),
    )
    .await
    .unwrap();

    let attendance = pki.workload("attendance");
    let channel = cpis_mesh::client::channel(
        &format!("https://localhost:{}", server.addr.port()),
        &pki.tls(&attendance),
        &Metrics::new(),
        &Default::default(),
    )
    .unwrap();
    AuditServiceClient::new(channel)
        .append(AppendRequest {
            events: (0..10).map(event).collect(),
        })
        .await
        .unwrap();

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = users.sign(&Claims {
        iss: ctx.config.tokens.issuer.clone(),
        sub: "auditor".into(),
        aud: ctx.config.tokens.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: "t".into(),
        org: "X26".into(),
        rp: "rp".into(),
        role: "privacy-officer".into(),
        act: vec!["audit.read".into()],
    });
    let seed: [u8; 32] = cpis_mesh::nhs_hash::decode_hex(SEED)
        .unwrap()
        .try_into()
        .unwrap();
    let vkey = cpis_merkle::CheckpointSigner::from_ed25519_seed("cpis.local/audit", &seed)
        .unwrap()
        .verifier()
        .vkey();
    let portal = pki.org_system("X26", "privacy-portal");
    let tls_dir = portal.ca.parent().unwrap().to_str().unwrap().to_owned();
    let state = pki.dir.path().join("verify.state");
    let address = format!("https://localhost:{}", server.addr.port());
    let common = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        args.extend(
            [
                "--address",
                &address,
                "--tls-dir",
                &tls_dir,
                "--vkey",
                &vkey,
                "--token",
                &token,
            ]
            .map(String::from),
        );
        args
    };
    let run = |extra: &[&str]| {
        let args = common(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cpis(&refs)
    };
    let state_arg = state.to_str().unwrap();

    let (ok, out) = run(&["audit", "verify", "--full", "--state", state_arg]);
    assert!(ok, "{out}");
    assert!(
        out.contains("all 10 events hash to the signed root"),
        "{out}"
    );
    assert!(state.exists());

    let (ok, out) = run(&["audit", "prove", "3"]);
    assert!(ok, "{out}");
    assert!(out.contains("event index 3 is included"), "{out}");

    let (ok, out) = run(&["audit", "verify", "--state", state_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("extends the accepted one of size"), "{out}");

    // A superuser alters event 4 behind the service's back.
    let mut attacker = sqlx::PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut attacker)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET leaf_data = overlay(leaf_data placing 'Z'::bytea from position('check 4'::bytea in leaf_data) + 6 for 1) WHERE idx = 4")
        .execute(&mut attacker)
        .await
        .unwrap();
    let (ok, out) = run(&["audit", "verify", "--full", "--state", state_arg]);
    assert!(!ok, "tampering not detected: {out}");
    assert!(out.contains("event index 4"), "{out}");

    // A wrong key is refused.
    let (ok, out) = cpis(&[
        "audit",
        "verify",
        "--address",
        &address,
        "--tls-dir",
        &tls_dir,
        "--vkey",
        "nonsense",
        "--state",
        state_arg,
    ]);
    assert!(!ok);
    assert!(out.contains("--vkey"), "{out}");

    // keygen prints a usable pair.
    let (ok, out) = cpis(&["audit", "keygen"]);
    assert!(
        ok && out.contains("CPIS_AUDIT_CHECKPOINT_KEY=")
            && out.contains("CPIS_AUDIT_VKEY=cpis.local/audit+"),
        "{out}"
    );
}
