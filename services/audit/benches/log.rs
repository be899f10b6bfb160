#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
//! The audit log on a real database: append throughput in batches, and at the resulting
//! size the latency of an inclusion proof, a consistency proof and a checkpoint.
//!
//! `cargo bench -p cpis-audit` uses SQLite in a temporary directory and 100,000 events;
//! `CPIS_BENCH_EVENTS=1000000` for more, `CPIS_BENCH_DATABASE_URL=postgres://...` for
//! Postgres (an empty database). Prints its figures; asserts nothing about speed.

use std::time::{Duration, Instant};

use cpis_audit::log;
use cpis_audit::store::{AuditStore, Columns, PendingEvent};
use cpis_merkle::CheckpointSigner;
use cpis_mesh::db::{Database, DatabaseSettings};
use cpis_proto::audit::{Actor, AuditEvent, AuditOutcome, actor};
use cpis_proto::common::NhsNumber;

const BATCH: usize = 500;

fn event(i: u64) -> PendingEvent {
    let event_id = uuid::Uuid::new_v4();
    let event = AuditEvent {
        event_id: event_id.to_string(),
        event_time: Some(prost_types::Timestamp {
            seconds: 1_760_000_000 + i as i64,
            nanos: 0,
        }),
        actor: Some(Actor {
            kind: Some(actor::Kind::Workload(
                "spiffe://cpis.local/ns/cpis/sa/attendance".into(),
            )),
            calling_system: "spiffe://cpis.local/org/RJ1/system/ed-ehr".into(),
        }),
        action: "attendance.check".into(),
        nhs_number: Some(NhsNumber {
            value: "9434765919".into(),
        }),
        outcome: AuditOutcome::Success as i32,
        reason: format!("synthetic {i}"),
        ..Default::default()
    };
    PendingEvent {
        event_id,
        columns: Columns::of(&event),
        event,
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

async fn run<S: AuditStore>(store: S, total: u64, dialect: &str) {
    println!("audit log on {dialect}: {total} events in batches of {BATCH}");
    let started = Instant::now();
    let mut appended = 0u64;
    while appended < total {
        let n = BATCH.min((total - appended) as usize) as u64;
        let batch = (appended..appended + n).map(event).collect();
        store.append(batch, "bench").await.expect("append");
        appended += n;
    }
    let elapsed = started.elapsed();
    println!(
        "  append: {:.0} events/s ({:.1} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let signer = CheckpointSigner::from_ed25519_seed("bench/audit", &[9; 32]).expect("signer");
    let mut checkpoints = Vec::new();
    for _ in 0..20 {
        // A new event each time, so each checkpoint is a new one.
        store
            .append(vec![event(total)], "bench")
            .await
            .expect("append");
        let t = Instant::now();
        log::checkpoint_now(&store, &signer, "bench/audit")
            .await
            .expect("checkpoint");
        checkpoints.push(t.elapsed());
    }
    let size = store.size().await.expect("size");
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for k in 0..200u64 {
        let index = (k * 7919) % size;
        let t = Instant::now();
        log::inclusion_proof(&store, size, index)
            .await
            .expect("proof");
        inclusion.push(t.elapsed());
        let old = 1 + (k * 104_729) % (size - 1);
        let t = Instant::now();
        log::consistency_proof(&store, size, old)
            .await
            .expect("proof");
        consistency.push(t.elapsed());
    }
    for (name, samples) in [
        ("checkpoint (root + sign + store)", &mut checkpoints),
        ("inclusion proof", &mut inclusion),
        ("consistency proof", &mut consistency),
    ] {
        println!(
            "  {name} at {size} events: median {:?}, p99 {:?}",
            percentile(samples, 0.5),
            percentile(samples, 0.99)
        );
    }
}

fn main() {
    let total: u64 = std::env::var("CPIS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = std::env::var("CPIS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let db = Database::connect(&DatabaseSettings::new(&url))
            .await
            .expect("database");
        db.migrate(&cpis_audit::MIGRATIONS).await.expect("migrate");
        match db {
            Database::Postgres(pool) => {
                run(
                    cpis_audit::store::postgres::PgAuditStore::new(pool),
                    total,
                    "postgres",
                )
                .await
            }
            Database::Sqlite(pool) => {
                run(
                    cpis_audit::store::sqlite::SqliteAuditStore::new(pool),
                    total,
                    "sqlite",
                )
                .await
            }
        }
    });
}
