//! `cpis flags upload`: a CSV file streamed to `BulkUpload` in constant memory.
//!
//! The file is read three times, one row at a time: to check every row and count them
//! (a malformed file is refused before anything is sent), to stream the records after the
//! header, and to write the report next to the rows it describes. The registry applies the
//! upload all or nothing.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use cpis_proto::flags::{
    BulkUploadRequest, RecordOutcome, UploadHeader, UploadMode, UploadOutcome, UploadRecordResult,
    UploadReport, bulk_upload_request,
};
use serde_json::json;

use super::AuthorityArgs;
use super::records::FlagsFile;
use crate::failure::Failure;
use crate::output::Output;
use crate::remote::{Remote, Service};

/// How the upload relates to the authority's flags already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// The records are created or replaced; other flags are left as they are.
    Incremental,
    /// The file is the authority's complete set: open flags it omits are ended.
    Snapshot,
}

/// `cpis flags upload`
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The CSV file (format: docs/flags-csv.md).
    #[arg(long)]
    file: PathBuf,
    /// This upload's sequence number: positive, unique per authority; a number already
    /// used answers the earlier report and applies nothing.
    #[arg(long)]
    sequence: i64,
    /// Incremental (upsert the records) or snapshot (also end the open flags the file
    /// omits).
    #[arg(long, value_enum, default_value = "incremental")]
    mode: Mode,
    /// Where to write the per-record report (CSV); by default `<file>.report.csv`.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Bound on the whole upload (the registry answers once every record is traced and
    /// applied).
    #[arg(long, default_value = "30m", value_parser = crate::remote::parse_duration)]
    upload_timeout: Duration,
    #[command(flatten)]
    authority: AuthorityArgs,
    #[command(flatten)]
    remote: Remote,
}

/// A progress line on standard error, redrawn in place, only when it is a terminal.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    total: u64,
    drawn: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            total,
            drawn: None,
        }
    }

    fn show(&mut self, text: &str) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K{text}");
        }
    }

    fn sent(&mut self, sent: u64) {
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(100));
        if due || sent == self.total {
            self.drawn = Some(Instant::now());
            let percent = (sent * 100).checked_div(self.total).unwrap_or(100);
            self.show(&format!(
                "sent {sent} of {} records ({percent}%)",
                self.total
            ));
            if sent == self.total {
                self.show(&format!(
                    "sent {sent} records; the registry is tracing and applying them..."
                ));
            }
        }
    }

    fn done(&mut self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// Runs `cpis flags upload`.
pub(crate) fn run(args: UploadArgs, output: Output) -> Result<(), Failure> {
    if args.sequence <= 0 {
        return Err(Failure::usage("--sequence must be a positive number"));
    }
    // First pass: every row checked, none kept.
    let mut file = FlagsFile::open(&args.file)?;
    let mut count: u64 = 0;
    while file.next_row()?.is_some() {
        count += 1;
    }
    drop(file);

    let runtime = crate::remote::runtime()?;
    let report = runtime.block_on(send(&args, count))?;
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| default_report_path(&args.file));
    write_report(&report_path, &args.file, &report)?;
    summarise(&args, &report_path, &report, output)
}

/// `<file>.report.csv`.
fn default_report_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".report.csv");
    PathBuf::from(name)
}

/// Second pass: the header, then the records from a reader thread through a bounded
/// channel, so that at most a few hundred records are in memory at once.
async fn send(args: &UploadArgs, count: u64) -> Result<UploadReport, Failure> {
    let (authority, contacts) = args.authority.resolve_with_contacts(&args.remote).await?;
    let header = UploadHeader {
        authority: Some(authority),
        contacts: Some(contacts),
        sequence_number: args.sequence,
        record_count: i64::try_from(count).unwrap_or(i64::MAX),
        mode: match args.mode {
            Mode::Incremental => UploadMode::Incremental,
            Mode::Snapshot => UploadMode::Snapshot,
        } as i32,
        file_name: args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let channel = args.remote.channel(Service::FlagRegistry)?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<BulkUploadRequest>(256);
    sender
        .send(BulkUploadRequest {
            content: Some(bulk_upload_request::Content::Header(header)),
        })
        .await
        .map_err(|_| Failure::internal("the upload stream closed before it started"))?;
    let problem: Arc<Mutex<Option<Failure>>> = Arc::default();
    let reader = {
        let path = args.file.clone();
        let problem = problem.clone();
        std::thread::spawn(move || {
            let mut progress = Progress::new(count);
            let result = (|| -> Result<(), Failure> {
                let mut file = FlagsFile::open(&path)?;
                let mut sent = 0;
                while let Some(row) = file.next_row()? {
                    let message = BulkUploadRequest {
                        content: Some(bulk_upload_request::Content::Record(row.record)),
                    };
                    if sender.blocking_send(message).is_err() {
                        // The registry answered early (a replay): nothing more to send.
                        break;
                    }
                    sent += 1;
                    progress.sent(sent);
                }
                Ok(())
            })();
            if let Err(failure) = result
                && let Ok(mut slot) = problem.lock()
            {
                *slot = Some(failure);
            }
            progress
        })
    };
    let mut request = args
        .remote
        .authorized(tokio_stream::wrappers::ReceiverStream::new(receiver))?;
    request.set_timeout(args.upload_timeout);
    let answer = FlagRegistryServiceClient::new(channel)
        .bulk_upload(request)
        .await;
    if let Ok(mut progress) = reader.join() {
        progress.done();
    }
    // A file that changed between the passes breaks the stream: the registry refuses it
    // as corrupt and applies nothing.
    if let Some(failure) = problem.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(Failure::usage(format!(
            "{}\n  (the file changed while it was sent: the upload was refused, nothing applied)",
            failure.message
        )));
    }
    answer
        .map_err(|status| Failure::from_status("the upload", &status))?
        .into_inner()
        .report
        .ok_or_else(|| Failure::internal("the registry answered without a report"))
}

/// The outcome's name without its prefix (`STORED`, `NO_MATCH`, ...).
fn record_outcome(result: &UploadRecordResult) -> &'static str {
    let name = result.outcome().as_str_name();
    name.strip_prefix("RECORD_OUTCOME_").unwrap_or(name)
}

/// What a person reads about a record's outcome.
fn detail(result: &UploadRecordResult) -> String {
    match result.outcome() {
        RecordOutcome::Stored => String::new(),
        RecordOutcome::Superseded => format!(
            "the NHS number was superseded: stored under {}",
            result
                .superseded_by
                .as_ref()
                .map(|n| n.value.as_str())
                .unwrap_or_default()
        ),
        RecordOutcome::NoMatch => "nobody in the person register has this NHS number".into(),
        RecordOutcome::SensitiveRefused => "the person's record is sensitive: refused".into(),
        RecordOutcome::NotVerified => "the date of birth does not match the person's".into(),
        RecordOutcome::Inactive => "the NHS number is no longer in use".into(),
        RecordOutcome::Invalid | RecordOutcome::Unspecified => result.message.clone(),
    }
}

/// A CSV field, quoted when it must be (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Third pass: one report row per record, with the line and case reference from the file
/// (a replay's report describes the earlier upload, so its rows come from the report).
fn write_report(path: &Path, file: &Path, report: &UploadReport) -> Result<(), Failure> {
    let out = std::fs::File::create(path).map_err(|e| Failure::io(path, e))?;
    let mut out = std::io::BufWriter::new(out);
    let io = |e| Failure::io(path, e);
    writeln!(out, "line,case_reference,outcome,detail").map_err(io)?;
    let mut rows = if report.replayed {
        None
    } else {
        Some(FlagsFile::open(file)?)
    };
    for result in &report.records {
        let row = match rows.as_mut() {
            Some(rows) => rows.next_row()?,
            None => None,
        };
        let (line, case) = match &row {
            Some(row) => (row.line.to_string(), row.record.case_reference.as_str()),
            None => (String::new(), result.case_reference.as_str()),
        };
        writeln!(
            out,
            "{},{},{},{}",
            line,
            field(case),
            record_outcome(result),
            field(&detail(result))
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)
}

/// The summary, and the exit code of the file's outcome.
fn summarise(
    args: &UploadArgs,
    report_path: &Path,
    report: &UploadReport,
    output: Output,
) -> Result<(), Failure> {
    let outcome = report.outcome();
    let name = outcome.as_str_name();
    let name = name.strip_prefix("UPLOAD_OUTCOME_").unwrap_or(name);
    let mode = match report.mode() {
        UploadMode::Snapshot => "snapshot",
        _ => "incremental",
    };
    if output.json {
        output.json(&json!({
            "file": args.file.display().to_string(),
            "report_file": report_path.display().to_string(),
            "upload_id": report.upload_id,
            "sequence_number": report.sequence_number,
            "mode": mode,
            "outcome": name,
            "message": report.message,
            "replayed": report.replayed,
            "declared_record_count": report.declared_record_count,
            "received_record_count": report.received_record_count,
            "stored": report.stored_count,
            "superseded": report.superseded_count,
            "refused": report.refused_count,
            "invalid": report.invalid_count,
            "ended": report.ended_case_references.len(),
            "ended_case_references": report.ended_case_references,
        }));
    } else {
        let replay = if report.replayed {
            " — a replay: the earlier upload's report, nothing applied now"
        } else {
            ""
        };
        output.line(&format!(
            "{}: {name} (sequence {}, {mode}, upload {}){replay}",
            args.file.display(),
            report.sequence_number,
            report.upload_id
        ));
        output.line(&format!(
            "  {} records: {} stored ({} under a superseding number), {} refused, {} invalid; \
             {} flags ended by the snapshot",
            report.received_record_count,
            report.stored_count,
            report.superseded_count,
            report.refused_count,
            report.invalid_count,
            report.ended_case_references.len()
        ));
        if !report.message.is_empty() {
            output.line(&format!("  {}", report.message));
        }
        output.line(&format!("  report: {}", report_path.display()));
    }
    let not_stored = report.refused_count + report.invalid_count;
    match outcome {
        _ if report.replayed => Err(Failure {
            code: 7,
            message: format!(
                "sequence number {} was already used: nothing applied (the earlier report is \
                 in {})",
                report.sequence_number,
                report_path.display()
            ),
        }),
        UploadOutcome::Success => Ok(()),
        UploadOutcome::Partial => Err(Failure::failed(format!(
            "{not_stored} records were not stored: see {}",
            report_path.display()
        ))),
        UploadOutcome::Failed => Err(Failure::failed(format!(
            "no record could be stored, nothing applied: see {}",
            report_path.display()
        ))),
        UploadOutcome::Corrupt => Err(Failure::usage(format!(
            "the registry refused the file as corrupt, nothing applied: {}",
            report.message
        ))),
        UploadOutcome::DemographicsUnavailable => Err(Failure {
            code: 6,
            message: format!(
                "the person register did not answer, nothing applied; send the upload again \
                 with the same sequence number: {}",
                report.message
            ),
        }),
        UploadOutcome::Unspecified => Err(Failure::internal("the report has no outcome")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn the_default_report_sits_next_to_the_file() {
        assert_eq!(
            default_report_path(Path::new("in/plans.csv")),
            PathBuf::from("in/plans.csv.report.csv")
        );
    }
}
