//! `cpis bench`: load generators against a running mesh (`cpis dev` or a deployed one).
//!
//! `cpis bench check` is closed-loop ([`closed_loop`]): each of `--concurrency` workers
//! sends a check, waits for its answer, and sends the next, for `--duration` or until
//! `--requests` have been sent. Latencies go to a fixed-bucket histogram per worker
//! ([`histogram`]), merged at the end. With `--baseline`, the same load then runs against
//! `grpc.health.v1.Health/Check` over the same mTLS channels: the ceiling of the RPC stack,
//! to compare the check with.
//!
//! With `--rate`, it is open-loop instead ([`open_loop`]): checks are sent on a fixed
//! schedule whatever the answers do, and timed from their scheduled send time. With
//! `--rate half-peak`, a closed-loop phase finds the peak first and an open-loop phase then
//! runs at half of it: issue 6's two figures from one command.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

mod closed_loop;
mod histogram;
mod notify;
mod numbers;
mod open_loop;
mod report;

use histogram::Histogram;
use open_loop::Rate;
use report::{OpenLoop, Phase, Report};

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
    /// the next, or with --rate on a fixed schedule; prints requests/s, latency percentiles
    /// and errors by status code.
    Check(CheckArgs),
    /// How long after a check returns its authority's live stream hears of it (through the
    /// outbox); prints p50/p95/p99.
    Notify(notify::NotifyArgs),
}

/// `cpis bench check ...`
#[derive(Debug, Clone, Args)]
struct CheckArgs {
    /// Workers, each with one check in flight at a time [default: 8]. With --rate N: the
    /// most checks in flight at once [default: 64]; with --rate half-peak, the open-loop
    /// phase allows 64 or this, whichever is more.
    #[arg(long, short = 'c')]
    concurrency: Option<u32>,
    /// Open loop: send this many checks per second on a fixed schedule, whatever the
    /// answers do, timing each from its scheduled send time; or `half-peak`: a closed-loop
    /// phase first, then an open-loop one at half its rate, each with these limits.
    #[arg(long, value_parser = open_loop::parse_rate)]
    rate: Option<Rate>,
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
    /// ceiling of the RPC stack, and print the ratio (open loop: at the same rate).
    #[arg(long)]
    baseline: bool,
    /// With --rate: write every check of the open-loop phase to FILE, one line each, in the
    /// order they were due: its scheduled send time (microseconds since the Unix epoch), its
    /// latency (microseconds from that time), its status (OK or a gRPC code's name) and how
    /// long after its time it was sent (microseconds), tab-separated under a header line. Slow checks then line up with the services' and
    /// the database's logs (see docs/performance.md).
    #[arg(long, value_name = "FILE")]
    latencies: Option<PathBuf>,
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
/// Closed-loop workers without --concurrency.
const DEFAULT_WORKERS: u32 = 8;
/// Open loop: the most checks in flight without --concurrency; enough for 10 ms answers
/// at over 6,000 checks/s, so that the cap, not the service, rarely sets the pace.
const DEFAULT_MAX_IN_FLIGHT: u32 = 64;

/// When a run stops: after a time, a number of calls, or the first of both.
#[derive(Debug, Clone, Copy)]
struct Limits {
    duration: Option<Duration>,
    requests: Option<u64>,
}

fn run_check(remote: &Remote, args: &CheckArgs, output: Output) -> Result<(), Failure> {
    if args.concurrency == Some(0) || args.connections == 0 || args.requests == Some(0) {
        return Err(Failure::usage(
            "--concurrency, --connections and --requests must be more than 0",
        ));
    }
    if args.latencies.is_some() && args.rate.is_none() {
        return Err(Failure::usage(
            "--latencies records the open-loop phase: give --rate too",
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
    let workers = args.concurrency.unwrap_or(DEFAULT_WORKERS);
    let closed = match args.rate {
        Some(Rate::PerSecond(_)) => None,
        None | Some(Rate::HalfPeak) => {
            let pace = Pace::Closed { workers };
            let closed =
                runtime.block_on(phase(&channels, pace, limits, &calls, args.baseline, false));
            every_check_failed(&closed.0)?;
            Some(closed)
        }
    };
    let open_pace = match args.rate {
        None => None,
        Some(Rate::PerSecond(rate)) => Some(Pace::Open {
            rate,
            max_in_flight: args.concurrency.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        }),
        Some(Rate::HalfPeak) => {
            let peak = closed.as_ref().map_or(0.0, |(check, _)| check.rate());
            if peak <= 0.0 {
                return Err(Failure::usage(
                    "the closed-loop phase sent no checks: no peak to halve",
                ));
            }
            Some(Pace::Open {
                rate: peak / 2.0,
                max_in_flight: workers.max(DEFAULT_MAX_IN_FLIGHT),
            })
        }
    };
    let open = match open_pace {
        Some(pace) => {
            let record = args.latencies.is_some();
            let (check, baseline) = runtime.block_on(phase(
                &channels,
                pace,
                limits,
                &calls,
                args.baseline,
                record,
            ));
            every_check_failed(&check)?;
            if let Some(path) = &args.latencies {
                write_latencies(path, &check.samples)?;
            }
            Some(OpenLoop {
                half_peak: args.rate == Some(Rate::HalfPeak),
                check,
                baseline,
            })
        }
        None => None,
    };
    let (check, baseline) = closed.map_or((None, None), |(c, b)| (Some(c), b));
    let report = Report {
        target: remote.address(Service::Attendance),
        organisation,
        children: children.source,
        concurrency: match args.rate {
            Some(Rate::PerSecond(_)) => args.concurrency.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            _ => workers,
        },
        connections: args.connections,
        check,
        baseline,
        open_loop: open,
    };
    report.print(output);
    Ok(())
}

/// How a phase sends its calls.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Closed loop: `workers`, each with one call in flight.
    Closed { workers: u32 },
    /// Open loop: `rate` calls a second on a fixed schedule, at most `max_in_flight` at once.
    Open { rate: f64, max_in_flight: u32 },
}

/// Runs the checks at `pace` until `limits`, then, with `baseline`, the health RPC at the
/// same pace. With `record` (open loop only), the checks' phase keeps every check's sample.
async fn phase(
    channels: &[MeshChannel],
    pace: Pace,
    limits: Limits,
    calls: &Arc<Calls>,
    baseline: bool,
    record: bool,
) -> (Phase, Option<Phase>) {
    let paced = |target, record| async move {
        match pace {
            Pace::Closed { workers } => closed_loop::load(channels, workers, limits, target).await,
            Pace::Open {
                rate,
                max_in_flight,
            } => open_loop::load(channels, rate, max_in_flight, limits, target, record).await,
        }
    };
    settle().await;
    let check = paced(Target::Check(Arc::clone(calls)), record).await;
    let baseline = if baseline {
        settle().await;
        Some(paced(Target::Health, false).await)
    } else {
        None
    };
    (check, baseline)
}

/// Writes the page cache's dirty pages out (`sync`) before a phase, so that no phase is
/// charged for the writeback of the one before: the kernel writes dirty pages back in bursts
/// once they are 30 s old, and each burst holds up every WAL flush of a database on the same
/// disk. The closed loop's writes came back that way in the open loop that follows it 30 s
/// later (docs/performance.md, "7 December, morning"). With the services on another machine
/// this only writes out the generator's own.
async fn settle() {
    let _ = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
}

/// Writes `--latencies`: a header, then one line per check.
fn write_latencies(path: &Path, samples: &[open_loop::Sample]) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::usage(format!("--latencies {}: {e}", path.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
    writeln!(file, "{}", open_loop::Sample::HEADER).map_err(failed)?;
    for sample in samples {
        writeln!(file, "{}", sample.line()).map_err(failed)?;
    }
    file.flush().map_err(failed)
}

/// Fails the command, with the first failure's code, if no check of `phase` was answered.
fn every_check_failed(phase: &Phase) -> Result<(), Failure> {
    match &phase.first_error {
        Some(status) if phase.histogram.count() == 0 => {
            Err(Failure::from_status("every check failed", status))
        }
        _ => Ok(()),
    }
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
    /// Counts one call's outcome, which took `latency` if answered OK.
    fn count(&mut self, outcome: Result<bool, tonic::Status>, latency: Duration) {
        match outcome {
            Ok(flagged) => {
                self.histogram.record(latency);
                self.flagged += u64::from(flagged);
            }
            Err(status) => {
                *self
                    .errors
                    .entry(cpis_mesh::metrics::code_name(status.code()))
                    .or_default() += 1;
                self.first_error.get_or_insert(status);
            }
        }
    }

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
