#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
//! Bulk upload throughput and cached `GetFlags` latency, through the real gRPC server over
//! mTLS, on SQLite in a temporary directory (`CPIS_BENCH_DATABASE_URL=postgres://...` for an
//! empty Postgres database).
//!
//! `cargo bench -p cpis-flag-registry`: 100,000 records (`CPIS_BENCH_RECORDS`) traced against
//! a register of 900,000 synthetic persons (`CPIS_BENCH_REGISTER`, held in memory; the 999
//! test range holds about 909,000 valid NHS numbers, so 1,000,000 cannot be made), then
//! 20,000 cached `GetFlags` over 1,000 children. Prints records/s, the process's peak
//! memory, requests/s and p50/p99; asserts nothing about speed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpis_domain::PersonStatus;
use cpis_flag_registry::demographics::FixedRegister;
use cpis_proto::common::{LocalAuthority, NhsNumber, OdsCode};
use cpis_proto::flags::{
    BulkUploadRequest, FlagRecord, GetFlagsRequest, UploadHeader, UploadMode, bulk_upload_request,
};
use cpis_proto::identity::TraceOutcome;
use support::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_memory_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::main]
async fn main() {
    let records = env_number("CPIS_BENCH_RECORDS", 100_000);
    let register_size = env_number("CPIS_BENCH_REGISTER", 900_000).max(records);
    let persons = cpis_identity::persons::synthetic(0, register_size).expect("synthetic range");
    let mut register = FixedRegister::default();
    let mut active = Vec::new();
    for person in &persons {
        let outcome = match (person.sensitive, person.status) {
            (true, _) => TraceOutcome::Sensitive,
            (false, PersonStatus::Active) => TraceOutcome::Matched,
            (false, PersonStatus::Inactive) => TraceOutcome::Inactive,
            (false, PersonStatus::Superseded { .. }) => TraceOutcome::Superseded,
        };
        let by = match person.status {
            PersonStatus::Superseded { by } => Some(by.as_str().to_owned()),
            _ => None,
        };
        register = register.with(person.nhs_number.as_str(), outcome, by.as_deref());
        if outcome == TraceOutcome::Matched {
            active.push(person.nhs_number.as_str().to_owned());
        }
    }
    drop(persons);

    let dir = tempfile::tempdir().expect("temporary directory");
    let url = std::env::var("CPIS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| cpis_mesh::testkit::sqlite_database(dir.path(), "flags"));
    let h = start_with(
        &url,
        Options {
            register,
            ..Options::default()
        },
    )
    .await;
    let dialect = h.db.dialect();
    let before = peak_memory_mib();

    // The upload: generated lazily, so the client holds one record at a time.
    let header = BulkUploadRequest {
        content: Some(bulk_upload_request::Content::Header(UploadHeader {
            authority: Some(LocalAuthority {
                code: Some(OdsCode {
                    value: CAMDEN.into(),
                }),
                name: "Camden".into(),
            }),
            contacts: Some(contacts()),
            sequence_number: 1,
            record_count: i64::try_from(records).unwrap_or(i64::MAX),
            mode: UploadMode::Snapshot as i32,
            file_name: "bench.csv".into(),
        })),
    };
    let template: FlagRecord = cpp(CAMDEN, "x", &nhs(1)).record.expect("record");
    let numbers = Arc::new(active);
    let stream_numbers = numbers.clone();
    let stream = tokio_stream::iter(std::iter::once(header).chain((0..records).map(move |i| {
        let index = usize::try_from(i).unwrap_or_default();
        let mut record = template.clone();
        record.case_reference = format!("BENCH-{i:07}");
        record.nhs_number = Some(NhsNumber {
            value: stream_numbers[index % stream_numbers.len()].clone(),
        });
        BulkUploadRequest {
            content: Some(bulk_upload_request::Content::Record(record)),
        }
    })));
    let token = h.manager(CAMDEN);
    let started = Instant::now();
    let report = h
        .client(&format!("org:{CAMDEN}"))
        .bulk_upload(authed(&token, stream))
        .await
        .expect("upload")
        .into_inner()
        .report
        .expect("report");
    let elapsed = started.elapsed();
    println!(
        "upload on {dialect}: {records} records against a register of {register_size} in {:.2}s: \
         {:.0} records/s; outcome {:?}, {} stored",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        report.outcome(),
        report.stored_count
    );
    println!(
        "peak memory: {} MiB before the upload (register in memory), {} MiB after",
        before.unwrap_or_default(),
        peak_memory_mib().unwrap_or_default()
    );

    // Cached GetFlags: 1,000 children, each read many times.
    let mut attendance = h.client("attendance");
    let children = 1_000.min(numbers.len());
    let requests = 20_000;
    let mut latencies = Vec::with_capacity(requests);
    let started = Instant::now();
    for i in 0..requests {
        let request = GetFlagsRequest {
            nhs_number: Some(NhsNumber {
                value: numbers[i % children].clone(),
            }),
            include_history: false,
        };
        let one = Instant::now();
        attendance.get_flags(request).await.expect("get flags");
        latencies.push(one.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64) * q) as usize)
            .copied()
            .unwrap_or(Duration::ZERO)
    };
    println!(
        "GetFlags (cached, one client, sequential): {:.0} requests/s, p50 {:?}, p99 {:?}",
        requests as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99)
    );
}
