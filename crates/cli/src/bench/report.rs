//! The report of `cpis bench check`: text for people, one JSON document with `--json`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::histogram::Histogram;
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
    fn rate(&self) -> f64 {
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
        json!({
            "rpc": rpc,
            "requests": self.requests(),
            "ok": self.ok(),
            "errors": self.error_count(),
            "errors_by_code": self.errors,
            "elapsed_seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "requests_per_second": (self.rate() * 10.0).round() / 10.0,
            "latency_ms": latency,
        })
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
    /// Workers.
    pub(super) concurrency: u32,
    /// HTTP/2 connections.
    pub(super) connections: u32,
    /// The checks.
    pub(super) check: Phase,
    /// The health RPC under the same load, when asked for.
    pub(super) baseline: Option<Phase>,
}

const CHECK_RPC: &str = "cpis.attendance.v1.AttendanceService/RecordAttendance";
const HEALTH_RPC: &str = "grpc.health.v1.Health/Check";

impl Report {
    /// The checks' throughput as a share of the health RPC's.
    fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline.as_ref()?.rate();
        (baseline > 0.0).then(|| (self.check.rate() / baseline * 1000.0).round() / 1000.0)
    }

    /// Prints the report as `output` asks.
    pub(super) fn print(&self, output: Output) {
        if output.json {
            let mut check = self.check.json(CHECK_RPC);
            check["flagged_answers"] = json!(self.check.flagged);
            check["unflagged_answers"] = json!(self.check.ok() - self.check.flagged);
            output.json(&json!({
                "target": self.target,
                "organisation": self.organisation,
                "children": self.children,
                "concurrency": self.concurrency,
                "connections": self.connections,
                "check": check,
                "baseline": self.baseline.as_ref().map(|b| b.json(HEALTH_RPC)),
                "check_to_baseline_ratio": self.ratio(),
            }));
            return;
        }
        output.line(&format!(
            "cpis bench check: {} at {}, {} workers on {} connection(s), children from {}",
            self.organisation, self.target, self.concurrency, self.connections, self.children
        ));
        self.check.lines("checks", output);
        output.line(&format!(
            "  answers with flags: {}, without: {}",
            self.check.flagged,
            self.check.ok() - self.check.flagged
        ));
        if let Some(baseline) = &self.baseline {
            baseline.lines("health baseline (same load, same channels)", output);
        }
        if let Some(ratio) = self.ratio() {
            output.line(&format!("checks/s as a share of health/s: {ratio:.3}"));
        }
    }
}
