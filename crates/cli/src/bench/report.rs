//! The report of `cpis bench check`: text for people, one JSON document with `--json`.
//! `check`, `baseline` and `check_to_baseline_ratio` are the closed-loop phase's, as they
//! were before the open-loop mode; the open-loop phase's figures are under `open_loop`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::histogram::Histogram;
use super::open_loop::{LATE_AFTER, Sample, Schedule};
use crate::output::{Output, Table};

/// What one load (the checks, or the health baseline) measured.
#[derive(Debug)]
pub(super) struct Phase {
    /// From the first call sent to the last answer.
    pub(super) elapsed: Duration,
    /// Latencies of the calls answered OK.
    pub(super) histogram: Histogram,
    /// Failed calls by status code name.
    pub(super) errors: BTreeMap<&'static str, u64>,
    /// Answers that showed at least one flag.
    pub(super) flagged: u64,
    /// The first failure, to explain a run where every call failed.
    pub(super) first_error: Option<tonic::Status>,
    /// Open loop: how the schedule was kept (latencies then run from scheduled send times).
    pub(super) schedule: Option<Schedule>,
    /// Open loop with `--latencies`: every call, in the order they were due.
    pub(super) samples: Vec<Sample>,
}

impl Phase {
    fn ok(&self) -> u64 {
        self.histogram.count()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn requests(&self) -> u64 {
        self.ok() + self.error_count()
    }

    /// Calls answered (OK or not) per second.
    pub(super) fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.requests() as f64 / seconds
        } else {
            0.0
        }
    }

    fn ms(micros: u64) -> f64 {
        micros as f64 / 1000.0
    }

    fn latency(&self) -> [(&'static str, f64); 6] {
        let h = &self.histogram;
        [
            ("p50", Self::ms(h.quantile(0.50))),
            ("p90", Self::ms(h.quantile(0.90))),
            ("p95", Self::ms(h.quantile(0.95))),
            ("p99", Self::ms(h.quantile(0.99))),
            ("max", Self::ms(h.max())),
            ("mean", h.mean().round() / 1000.0),
        ]
    }

    fn json(&self, rpc: &str) -> Value {
        let latency: serde_json::Map<String, Value> = self
            .latency()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let mut phase = json!({
            "rpc": rpc,
            "requests": self.requests(),
            "ok": self.ok(),
            "errors": self.error_count(),
            "errors_by_code": self.errors,
            "elapsed_seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "requests_per_second": (self.rate() * 10.0).round() / 10.0,
            "latency_ms": latency,
        });
        if let Some(schedule) = &self.schedule {
            phase["offered_rate"] = json!((schedule.offered_rate * 10.0).round() / 10.0);
            let achieved = schedule.achieved_rate(self.requests(), self.elapsed);
            phase["achieved_rate"] = json!((achieved * 10.0).round() / 10.0);
            phase["max_in_flight"] = json!(schedule.max_in_flight);
            phase["late"] = json!(schedule.late);
            phase["waited_for_in_flight_cap"] = json!(schedule.waited_for_cap);
            phase["unsent"] = json!(schedule.unsent);
            phase["max_behind_schedule_ms"] =
                json!((schedule.max_behind.as_secs_f64() * 1_000_000.0).round() / 1000.0);
            phase["latency_from"] = json!("scheduled send time");
        }
        phase
    }

    /// [`Self::json`] of the checks, with the answers' flags counted.
    fn check_json(&self) -> Value {
        let mut check = self.json(CHECK_RPC);
        check["flagged_answers"] = json!(self.flagged);
        check["unflagged_answers"] = json!(self.ok() - self.flagged);
        check
    }

    fn lines(&self, title: &str, output: Output) {
        output.line(&format!(
            "{title}: {} requests in {:.2} s: {:.1} requests/s; {} ok, {} errors",
            self.requests(),
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.ok(),
            self.error_count()
        ));
        let mut table = Table::new(&["latency", "ms"]);
        for (name, value) in self.latency() {
            table.row(vec![name.to_owned(), format!("{value:.3}")]);
        }
        if !output.json {
            table.print();
        }
        for (code, n) in &self.errors {
            output.line(&format!("  {code}: {n}"));
        }
        if let Some(schedule) = &self.schedule {
            if schedule.unsent > 0 {
                output.line(&format!(
                    "  unsent: {} checks due were still waiting for the cap when the run ended",
                    schedule.unsent
                ));
            }
            output.line(&format!(
                "  behind schedule: {} sent more than {} ms late ({} waited for the cap of {} \
                 in flight), at most {:.3} ms",
                schedule.late,
                LATE_AFTER.as_millis(),
                schedule.waited_for_cap,
                schedule.max_in_flight,
                schedule.max_behind.as_secs_f64() * 1000.0
            ));
        }
    }
}

/// The open-loop phase: the checks, and the health RPC at the same rate when asked for.
#[derive(Debug)]
pub(super) struct OpenLoop {
    /// Whether the rate was half the closed-loop phase's (else `--rate`'s).
    pub(super) half_peak: bool,
    /// The checks.
    pub(super) check: Phase,
    /// The health RPC at the same rate, when asked for.
    pub(super) baseline: Option<Phase>,
}

impl OpenLoop {
    fn rate_from(&self) -> &'static str {
        if self.half_peak {
            "half the closed-loop peak"
        } else {
            "--rate"
        }
    }

    fn json(&self) -> Value {
        let mut open = self.check.check_json();
        open["rate_from"] = json!(self.rate_from());
        open["baseline"] = json!(self.baseline.as_ref().map(|b| b.json(HEALTH_RPC)));
        open
    }

    fn lines(&self, output: Output) {
        let (offered, achieved) = self.check.schedule.as_ref().map_or((0.0, 0.0), |s| {
            (
                s.offered_rate,
                s.achieved_rate(self.check.requests(), self.check.elapsed),
            )
        });
        output.line(&format!(
            "open loop at {offered:.1} checks/s offered ({}), {achieved:.1}/s achieved; \
             latencies from each check's scheduled send time",
            self.rate_from()
        ));
        self.check.lines("checks", output);
        output.line(&format!(
            "  answers with flags: {}, without: {}",
            self.check.flagged,
            self.check.ok() - self.check.flagged
        ));
        if let Some(baseline) = &self.baseline {
            baseline.lines("health baseline (same rate, same channels)", output);
        }
    }
}

/// The whole run.
#[derive(Debug)]
pub(super) struct Report {
    /// The attendance service's address.
    pub(super) target: String,
    /// The care setting's organisation.
    pub(super) organisation: String,
    /// Where the children came from.
    pub(super) children: String,
    /// Closed-loop workers (open loop only: the most checks in flight).
    pub(super) concurrency: u32,
    /// HTTP/2 connections.
    pub(super) connections: u32,
    /// The closed-loop checks, unless only an open loop ran (`--rate N`).
    pub(super) check: Option<Phase>,
    /// The health RPC under the same closed-loop load, when asked for.
    pub(super) baseline: Option<Phase>,
    /// The open-loop phase, with `--rate`.
    pub(super) open_loop: Option<OpenLoop>,
}

const CHECK_RPC: &str = "cpis.attendance.v1.AttendanceService/RecordAttendance";
const HEALTH_RPC: &str = "grpc.health.v1.Health/Check";

impl Report {
    /// The checks' throughput as a share of the health RPC's.
    fn ratio(&self) -> Option<f64> {
        let check = self.check.as_ref()?.rate();
        let baseline = self.baseline.as_ref()?.rate();
        (baseline > 0.0).then(|| (check / baseline * 1000.0).round() / 1000.0)
    }

    /// Prints the report as `output` asks.
    pub(super) fn print(&self, output: Output) {
        if output.json {
            output.json(&json!({
                "target": self.target,
                "organisation": self.organisation,
                "children": self.children,
                "concurrency": self.concurrency,
                "connections": self.connections,
                "check": self.check.as_ref().map(Phase::check_json),
                "baseline": self.baseline.as_ref().map(|b| b.json(HEALTH_RPC)),
                "check_to_baseline_ratio": self.ratio(),
                "open_loop": self.open_loop.as_ref().map(OpenLoop::json),
            }));
            return;
        }
        let load = if self.check.is_some() {
            format!("{} workers", self.concurrency)
        } else {
            format!("at most {} in flight", self.concurrency)
        };
        output.line(&format!(
            "cpis bench check: {} at {}, {load} on {} connection(s), children from {}",
            self.organisation, self.target, self.connections, self.children
        ));
        if let Some(check) = &self.check {
            check.lines("checks", output);
            output.line(&format!(
                "  answers with flags: {}, without: {}",
                check.flagged,
                check.ok() - check.flagged
            ));
        }
        if let Some(baseline) = &self.baseline {
            baseline.lines("health baseline (same load, same channels)", output);
        }
        if let Some(ratio) = self.ratio() {
            output.line(&format!("checks/s as a share of health/s: {ratio:.3}"));
        }
        if let Some(open) = &self.open_loop {
            open.lines(output);
        }
    }
}
