//! Throughput and latency of `IssueToken` (over real mTLS, argon2id included) and of token
//! verification as other services do it (locally, keys cached from `GetSigningKeys`).
//!
//! `cargo bench -p cpis-identity --bench tokens` (SQLite; set `CPIS_BENCH_POSTGRES=1` for a
//! fresh database on the test Postgres server). Not a timed test: it prints, it asserts
//! nothing but that every call succeeded.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpis_identity::IdentityKeySource;
use cpis_mesh::token::{TokenRules, TokenVerifier};
use cpis_proto::identity::IssueTokenRequest;
use support::{Backend, PASSWORD, TestIdentity};

const SEQUENTIAL_SIGN_INS: usize = 40;
const CONCURRENT_CLIENTS: usize = 8;
const SIGN_INS_PER_CLIENT: usize = 10;
const VERIFICATIONS: usize = 100_000;

fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `count` calls, their total time, and latency percentiles.
fn report(what: &str, mut latencies: Vec<Duration>, total: Duration) {
    latencies.sort();
    let n = latencies.len();
    let at = |q: f64| latencies[((n as f64 * q) as usize).min(n - 1)];
    say(&format!(
        "{what}: {n} in {total:.2?} = {:.1}/s; p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}",
        n as f64 / total.as_secs_f64(),
        at(0.50),
        at(0.90),
        at(0.99),
        latencies[n - 1],
    ));
}

fn request(username: &str) -> IssueTokenRequest {
    IssueTokenRequest {
        username: username.to_owned(),
        credential: PASSWORD.to_owned(),
        role_profile_id: String::new(),
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run once, small.
    let backend = if std::env::var_os("CPIS_BENCH_POSTGRES").is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let test = TestIdentity::start_with(backend, |config| {
        // Benchmarks measure sign-in, not the lockout.
        config.service.username_failure_limit = 1_000_000;
    })
    .await;
    say(&format!(
        "identity on {backend:?}, argon2id with its default parameters"
    ));

    let client = test.org_client("RJ1", "ehr");
    client
        .clone()
        .issue_token(request("nurse.jones"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for _ in 0..SEQUENTIAL_SIGN_INS {
        let call = Instant::now();
        client
            .clone()
            .issue_token(request("nurse.jones"))
            .await
            .unwrap();
        latencies.push(call.elapsed());
    }
    report("IssueToken, one client", latencies, started.elapsed());

    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for _ in 0..SIGN_INS_PER_CLIENT {
                    let call = Instant::now();
                    client
                        .clone()
                        .issue_token(request("nurse.jones"))
                        .await
                        .unwrap();
                    latencies.push(call.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report(
        &format!("IssueToken, {CONCURRENT_CLIENTS} clients"),
        latencies,
        started.elapsed(),
    );

    let token = client
        .clone()
        .issue_token(request("nurse.jones"))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let tokens = &test.ctx.config.tokens;
    let verifier = TokenVerifier::new(
        Arc::new(IdentityKeySource::new(test.service_channel("attendance"))),
        TokenRules {
            issuer: tokens.issuer.clone(),
            audience: tokens.audience.clone(),
            leeway: tokens.leeway.get(),
            min_refresh_interval: Duration::from_secs(5),
        },
    );
    let first = Instant::now();
    verifier.verify(&token).await.unwrap();
    say(&format!(
        "first verification (fetches the keys from GetSigningKeys): {:.2?}",
        first.elapsed()
    ));
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(VERIFICATIONS);
    for _ in 0..VERIFICATIONS {
        let call = Instant::now();
        verifier.verify(&token).await.unwrap();
        latencies.push(call.elapsed());
    }
    report("token verification, local", latencies, started.elapsed());
    let calls = test.served("GetSigningKeys");
    say(&format!(
        "GetSigningKeys calls during all verifications: {calls}"
    ));
}
