//! `cpis bench`: load generators against a running mesh (`cpis dev` or a deployed one).
//!
//! `cpis bench check` is closed-loop: each of `--concurrency` workers sends a check, waits
//! for its answer, and sends the next, for `--duration` or until `--requests` have been
//! sent. Latencies go to a fixed-bucket histogram per worker ([`histogram`]), merged at the
//! end. With `--baseline`, the same load then runs against `grpc.health.v1.Health/Check`
//! over the same mTLS channels: the ceiling of the RPC stack, to compare the check with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use cpis_mesh::client::MeshChannel;
use cpis_proto::attendance::RecordAttendanceRequest;
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use cpis_proto::common::{self, CareSettingType};
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::failure::Failure;
use crate::output::Output;
use crate::remote::{Remote, Service, parse_duration};

mod histogram;
mod notify;
mod numbers;
mod report;

use histogram::Histogram;
use report::{Phase, Report};

/// `cpis bench ...`
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Checks (RecordAttendance) from concurrent workers, each waiting for its answer before
    /// the next; prints requests/s, latency percentiles and errors by status code.
    Check(CheckArgs),
    /// How long after a check returns its authority's live stream hears of it (through the
    /// outbox); prints p50/p95/p99.
    Notify(notify::NotifyArgs),
}

/// `cpis bench check ...`
#[derive(Debug, Clone, Args)]
struct CheckArgs {
    /// Workers, each with one check in flight at a time.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: u32,
    /// How long to run (unless --requests are sent first).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How many checks to send in all (unless --duration passes first).
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// HTTP/2 connections the workers share, round robin.
    #[arg(long, default_value_t = 1)]
    connections: u32,
    /// A child to check (repeatable); by default the demo children of
    /// `<data-dir>/demo.json`, flagged and unflagged.
    #[arg(long = "nhs-number", value_name = "NHS_NUMBER")]
    nhs_numbers: Vec<String>,
    /// The care setting's organisation (ODS code); by default the one the session token
    /// acts for.
    #[arg(long)]
    organisation: Option<String>,
    /// The care setting's site.
    #[arg(long, default_value = "")]
    site: String,
    /// Then run the same load against the health RPC over the same channels, as the
    /// ceiling of the RPC stack, and print the ratio.
    #[arg(long)]
    baseline: bool,
}

/// Runs `cpis bench ...`.
pub(crate) fn run(args: BenchArgs, output: Output) -> Result<(), Failure> {
    match args.command {
        BenchCommand::Check(check) => run_check(&args.remote, &check, output),
        BenchCommand::Notify(notify) => {
            crate::remote::runtime()?.block_on(notify::run(&args.remote, &notify, output))
        }
    }
}

/// Without --duration or --requests, a run lasts this long.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// When a run stops: after a time, a number of calls, or the first of both.
#[derive(Debug, Clone, Copy)]
struct Limits {
    duration: Option<Duration>,
    requests: Option<u64>,
}

fn run_check(remote: &Remote, args: &CheckArgs, output: Output) -> Result<(), Failure> {
    if args.concurrency == 0 || args.connections == 0 || args.requests == Some(0) {
        return Err(Failure::usage(
            "--concurrency, --connections and --requests must be more than 0",
        ));
    }
    let children = numbers::children(&args.nhs_numbers, &remote.data_dir)?;
    let token = remote.token()?;
    let organisation = match &args.organisation {
        Some(ods) => ods.clone(),
        None => numbers::token_organisation(&token).ok_or_else(|| {
            Failure::usage("the token names no organisation: pass --organisation ODS")
        })?,
    };
    let authorization = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Failure::usage("the token holds characters a header cannot carry"))?;
    let tls_dir = remote.tls_dir()?;
    let runtime = crate::remote::runtime()?;
    // Channels spawn their connection tasks on the runtime.
    let _entered = runtime.enter();
    let channels = (0..args.connections)
        .map(|_| remote.channel_with(Service::Attendance, &tls_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = Limits {
        duration: args
            .duration
            .or(args.requests.is_none().then_some(DEFAULT_DURATION)),
        requests: args.requests,
    };
    let setting = common::CareSetting {
        organisation: Some(common::OdsCode {
            value: organisation.clone(),
        }),
        site: args.site.clone(),
        setting_type: CareSettingType::EmergencyDepartment as i32,
        name: "cpis bench".to_owned(),
        phone: String::new(),
    };
    let calls = Arc::new(Calls {
        children: children.numbers,
        setting,
        authorization,
    });
    let (check, baseline) = runtime.block_on(async {
        let check = load(&channels, args.concurrency, limits, Target::Check(calls)).await;
        let baseline = if args.baseline {
            Some(load(&channels, args.concurrency, limits, Target::Health).await)
        } else {
            None
        };
        (check, baseline)
    });
    if check.histogram.count() == 0
        && let Some(status) = &check.first_error
    {
        return Err(Failure::from_status("every check failed", status));
    }
    let report = Report {
        target: remote.address(Service::Attendance),
        organisation,
        children: children.source,
        concurrency: args.concurrency,
        connections: args.connections,
        check,
        baseline,
    };
    report.print(output);
    Ok(())
}

/// What every check sends.
#[derive(Debug)]
struct Calls {
    children: Vec<String>,
    setting: common::CareSetting,
    authorization: MetadataValue<Ascii>,
}

/// The RPC a load runs against.
#[derive(Debug, Clone)]
enum Target {
    /// `RecordAttendance`, the check.
    Check(Arc<Calls>),
    /// `grpc.health.v1.Health/Check` of the attendance service.
    Health,
}

/// What one worker (or, merged, a whole load) saw.
#[derive(Debug, Default)]
struct Tally {
    histogram: Histogram,
    errors: BTreeMap<&'static str, u64>,
    flagged: u64,
    first_error: Option<tonic::Status>,
}

impl Tally {
    fn merge(&mut self, other: Self) {
        self.histogram.merge(&other.histogram);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.flagged += other.flagged;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `concurrency` closed-loop workers against `target` until `limits`; the merged
/// tally and the elapsed time.
async fn load(channels: &[MeshChannel], concurrency: u32, limits: Limits, target: Target) -> Phase {
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = limits.duration.map(|d| started + d);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let channel = channels[worker as usize % channels.len()].clone();
        let sent = Arc::clone(&sent);
        let target = target.clone();
        workers.spawn(async move {
            let mut tally = Tally::default();
            loop {
                if until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if limits.requests.is_some_and(|max| n >= max) {
                    break;
                }
                let begun = Instant::now();
                let outcome = call(&channel, &target, n).await;
                match outcome {
                    Ok(flagged) => {
                        tally.histogram.record(begun.elapsed());
                        tally.flagged += u64::from(flagged);
                    }
                    Err(status) => {
                        *tally
                            .errors
                            .entry(cpis_mesh::metrics::code_name(status.code()))
                            .or_default() += 1;
                        tally.first_error.get_or_insert(status);
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(done) = workers.join_next().await {
        if let Ok(tally) = done {
            total.merge(tally);
        }
    }
    Phase {
        elapsed: started.elapsed(),
        histogram: total.histogram,
        errors: total.errors,
        flagged: total.flagged,
        first_error: total.first_error,
    }
}

/// One call of `target`, the `n`th of the run; whether the answer showed a flag.
async fn call(channel: &MeshChannel, target: &Target, n: u64) -> Result<bool, tonic::Status> {
    match target {
        Target::Check(calls) => {
            let index = usize::try_from(n).unwrap_or(0) % calls.children.len();
            let mut request = Request::new(RecordAttendanceRequest {
                nhs_number: Some(common::NhsNumber {
                    value: calls.children[index].clone(),
                }),
                care_setting: Some(calls.setting.clone()),
                arrival_time: None,
                request_id: String::new(),
            });
            request
                .metadata_mut()
                .insert("authorization", calls.authorization.clone());
            let answer = AttendanceServiceClient::new(channel.clone())
                .record_attendance(request)
                .await?;
            Ok(!answer.get_ref().flags.is_empty())
        }
        Target::Health => {
            HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: cpis_proto::attendance::attendance_service_server::SERVICE_NAME
                        .to_owned(),
                })
                .await?;
            Ok(false)
        }
    }
}
