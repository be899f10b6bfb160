//! The open-loop mode of `cpis bench check` (`--rate`): the `i`th check is due at
//! `start + i / rate`, whatever the answers do, so a slow answer does not hold back the next
//! check (no coordinated omission). Each latency runs from the check's *scheduled* send time:
//! time spent waiting to be sent (for a core, or for the cap on checks in flight) counts against
//! it, as it would for a caller arriving at that moment.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cpis_mesh::client::MeshChannel;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::report::Phase;
use super::{Limits, Tally, Target, call};

/// What `--rate` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Rate {
    /// This many checks per second.
    PerSecond(f64),
    /// Half the peak of a closed-loop phase run first, with the same limits.
    HalfPeak,
}

/// Parses `--rate`: checks per second (a positive number), or `half-peak`.
pub(super) fn parse_rate(text: &str) -> Result<Rate, String> {
    let text = text.trim();
    if text == "half-peak" {
        return Ok(Rate::HalfPeak);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "`{text}`: write checks per second (a number above 0, e.g. 500) or half-peak"
        )),
    }
}

/// A check sent more than this after its scheduled time counts as late: the generator's
/// thread waited that long for a core or the cap held it back (sends on time trail the
/// schedule by tens of microseconds: see [`pace`]).
pub(super) const LATE_AFTER: Duration = Duration::from_millis(2);

/// When the `i`th check (from 0) is due, after the start, at `rate` checks per second.
fn offset(i: u64, rate: f64) -> Duration {
    Duration::try_from_secs_f64(i as f64 / rate).unwrap_or(Duration::MAX)
}

/// When the `i`th check is due, if the run includes it: the run sends the checks due
/// before `--duration` ends, and no more than `--requests`.
fn due(i: u64, rate: f64, limits: Limits) -> Option<Duration> {
    if limits.requests.is_some_and(|max| i >= max) {
        return None;
    }
    let at = offset(i, rate);
    if limits.duration.is_some_and(|d| at >= d) {
        return None;
    }
    Some(at)
}

/// How many checks the run's schedule holds: those [`due`].
fn scheduled_count(rate: f64, limits: Limits) -> u64 {
    let by_time = limits.duration.map_or(u64::MAX, |d| {
        // An estimate, then moved to agree exactly with `due`'s rounding.
        let mut n = (d.as_secs_f64() * rate).ceil().min(u64::MAX as f64) as u64;
        while n > 0 && offset(n - 1, rate) >= d {
            n -= 1;
        }
        while offset(n, rate) < d {
            n += 1;
        }
        n
    });
    limits.requests.map_or(by_time, |max| max.min(by_time))
}

/// How the schedule was kept.
#[derive(Debug, Clone, Default)]
pub(super) struct Schedule {
    /// Checks per second asked for.
    pub(super) offered_rate: f64,
    /// The most checks in flight at once.
    pub(super) max_in_flight: u32,
    /// Checks sent more than [`LATE_AFTER`] after their scheduled time.
    pub(super) late: u64,
    /// Checks that found `max_in_flight` checks in flight at their time and waited for one
    /// to be answered (late too, unless an answer came within [`LATE_AFTER`]).
    pub(super) waited_for_cap: u64,
    /// The furthest a check was sent behind its scheduled time.
    pub(super) max_behind: Duration,
    /// Checks due before `--duration` ended but still waiting for the cap when it did: the
    /// service fell that far behind.
    pub(super) unsent: u64,
}

impl Schedule {
    /// Answers per second: `answered` over the span the schedule gave them (a slot of
    /// `1 / rate` each) or until the last answer (`elapsed`), whichever is longer; so it
    /// is the offered rate when every answer kept up, and less when they fell behind.
    pub(super) fn achieved_rate(&self, answered: u64, elapsed: Duration) -> f64 {
        if answered == 0 || self.offered_rate <= 0.0 {
            return 0.0;
        }
        let span = answered as f64 / self.offered_rate;
        answered as f64 / span.max(elapsed.as_secs_f64())
    }

    /// Notes a check sent `behind` its scheduled time.
    fn sent(&mut self, behind: Duration) {
        if behind > LATE_AFTER {
            self.late += 1;
        }
        self.max_behind = self.max_behind.max(behind);
    }
}

/// One call of an open-loop phase, as `--latencies` writes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    /// Its scheduled send time, in microseconds since the Unix epoch.
    pub(super) scheduled_unix_us: u64,
    /// From that time to the answer.
    pub(super) latency: Duration,
    /// `OK`, or the failure's gRPC code name.
    pub(super) code: &'static str,
    /// How long after its scheduled time it was sent: the load generator's own delay (its
    /// thread waiting for a core, or the cap on checks in flight), part of the latency but
    /// not the service's doing.
    pub(super) sent_after: Duration,
}

impl Sample {
    /// The first line of a `--latencies` file.
    pub(super) const HEADER: &'static str = "scheduled_unix_us\tlatency_us\tcode\tsent_after_us";

    /// The sample as a line of a `--latencies` file (without the newline).
    pub(super) fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}",
            self.scheduled_unix_us,
            self.latency.as_micros(),
            self.code,
            self.sent_after.as_micros()
        )
    }
}

/// The schedule of a run started at `started`: the index of each call and the time it was
/// due, as it falls due.
///
/// A thread of its own keeps the time, sleeping until each call is due: the runtime's timer
/// rounds every sleep up to its next millisecond tick, which sent calls 1.1 ms after their
/// time at the median (and counted that against the service, whose latency runs from the
/// scheduled time); a thread's sleep ends within tens of microseconds of its time. The
/// thread stops when the schedule ends or the receiver is dropped.
fn pace(started: Instant, rate: f64, limits: Limits) -> mpsc::UnboundedReceiver<(u64, Instant)> {
    let (tick, ticks) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut i = 0u64;
        while let Some(at) = due(i, rate, limits) {
            let scheduled = started + at;
            let wait = scheduled.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if tick.send((i, scheduled)).is_err() {
                return;
            }
            i += 1;
        }
    });
    ticks
}

/// The answer to the `n`th call of an open-loop phase.
struct Answer {
    n: u64,
    outcome: Result<bool, tonic::Status>,
    /// From its scheduled send time to the answer.
    latency: Duration,
    /// From its scheduled send time to its sending.
    sent_after: Duration,
}

/// Sends checks of `target` at `rate` per second until `limits`, at most `max_in_flight`
/// at once, round robin over `channels`; waits for every answer.
pub(super) async fn load(
    channels: &[MeshChannel],
    rate: f64,
    max_in_flight: u32,
    limits: Limits,
    target: Target,
    record: bool,
) -> Phase {
    let mut schedule = Schedule {
        offered_rate: rate,
        max_in_flight,
        ..Schedule::default()
    };
    let slots = Arc::new(Semaphore::new(max_in_flight as usize));
    let mut in_flight = JoinSet::new();
    let mut tally = Tally::default();
    let started = Instant::now();
    // The wall clock at the start, for `--latencies`: scheduled times are offsets from it.
    let wall_start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut samples = Vec::new();
    // Counts the `n`th check's answer (and, with `record`, keeps its sample).
    let mut settle = |answer: Answer| {
        if record {
            let at = wall_start + offset(answer.n, rate);
            samples.push(Sample {
                scheduled_unix_us: u64::try_from(at.as_micros()).unwrap_or(u64::MAX),
                latency: answer.latency,
                code: match &answer.outcome {
                    Ok(_) => "OK",
                    Err(status) => cpis_mesh::metrics::code_name(status.code()),
                },
                sent_after: answer.sent_after,
            });
        }
        tally.count(answer.outcome, answer.latency);
    };
    // However far behind the service falls, the run ends with --duration: a check still
    // waiting for the cap then is counted as unsent, not sent minutes late.
    let end = limits.duration.map(|d| started + d);
    let mut ticks = pace(started, rate, limits);
    while let Some((i, scheduled)) = ticks.recv().await {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                schedule.waited_for_cap += 1;
                let free = Arc::clone(&slots).acquire_owned();
                let slot = match end {
                    Some(end) => tokio::time::timeout_at(end.into(), free).await.ok(),
                    None => Some(free.await),
                };
                match slot {
                    Some(Ok(slot)) => slot,
                    // The run ended (the semaphore is never closed).
                    _ => {
                        schedule.unsent = scheduled_count(rate, limits).saturating_sub(i);
                        break;
                    }
                }
            }
        };
        schedule.sent(Instant::now().saturating_duration_since(scheduled));
        let index = usize::try_from(i).unwrap_or(0) % channels.len();
        let channel = channels[index].clone();
        let target = target.clone();
        in_flight.spawn(async move {
            // The task starts when the loop next waits: that is when the call goes.
            let sent_after = scheduled.elapsed();
            let outcome = call(&channel, &target, i).await;
            let latency = scheduled.elapsed();
            drop(slot);
            Answer {
                n: i,
                outcome,
                latency,
                sent_after,
            }
        });
        // Answers so far, so that finished tasks do not pile up over a long run.
        while let Some(done) = in_flight.try_join_next() {
            if let Ok(answer) = done {
                settle(answer);
            }
        }
    }
    // Stops the pacer, if the run ended before its schedule did.
    drop(ticks);
    while let Some(done) = in_flight.join_next().await {
        if let Ok(answer) = done {
            settle(answer);
        }
    }
    samples.sort_by_key(|s| s.scheduled_unix_us);
    Phase {
        elapsed: started.elapsed(),
        histogram: tally.histogram,
        errors: tally.errors,
        flagged: tally.flagged,
        first_error: tally.first_error,
        schedule: Some(schedule),
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(duration: Option<Duration>, requests: Option<u64>) -> Limits {
        Limits { duration, requests }
    }

    #[test]
    fn the_ith_check_is_due_at_i_over_the_rate() {
        let unlimited = limits(None, Some(u64::MAX));
        assert_eq!(due(0, 20.0, unlimited), Some(Duration::ZERO));
        assert_eq!(due(1, 20.0, unlimited), Some(Duration::from_millis(50)));
        assert_eq!(due(40, 20.0, unlimited), Some(Duration::from_secs(2)));
        assert_eq!(due(3, 0.5, unlimited), Some(Duration::from_secs(6)));
        assert_eq!(
            due(1_500, 1_000.0, unlimited),
            Some(Duration::from_millis(1_500))
        );
        // Schedules never drift: the millionth check at 3/s is due at exactly 333,333.33 s.
        let far = due(1_000_000, 3.0, unlimited).unwrap();
        assert!(
            far.abs_diff(Duration::from_secs_f64(1_000_000.0 / 3.0)) < Duration::from_micros(1),
            "{far:?}"
        );
    }

    #[test]
    fn a_run_sends_the_checks_due_before_its_end_and_no_more_than_asked() {
        let count = |rate, limits| {
            (0..)
                .take_while(|&i| due(i, rate, limits).is_some())
                .count()
        };
        let two_seconds = limits(Some(Duration::from_secs(2)), None);
        // Due at 0, 50 ms, ..., 1950 ms; the one due at 2 s is after the end.
        assert_eq!(count(20.0, two_seconds), 40);
        assert_eq!(count(0.4, two_seconds), 1);
        assert_eq!(count(2.5, limits(Some(Duration::from_secs(1)), None)), 3);
        assert_eq!(
            count(20.0, limits(Some(Duration::from_secs(2)), Some(7))),
            7
        );
        assert_eq!(count(20.0, limits(None, Some(7))), 7);
        for (rate, limits) in [
            (20.0, two_seconds),
            (0.4, two_seconds),
            (2.5, limits(Some(Duration::from_secs(1)), None)),
            (30.0, limits(Some(Duration::from_millis(100)), None)),
            (3.0, limits(Some(Duration::from_millis(1_000)), None)),
            (
                1_000.0,
                limits(Some(Duration::from_millis(1_234)), Some(5_000)),
            ),
            (20.0, limits(Some(Duration::from_secs(2)), Some(7))),
            (20.0, limits(None, Some(7))),
        ] {
            assert_eq!(
                scheduled_count(rate, limits),
                count(rate, limits) as u64,
                "{rate}/s, {limits:?}"
            );
        }
    }

    #[test]
    fn a_sample_is_one_tab_separated_line_under_the_header() {
        let sample = Sample {
            scheduled_unix_us: 1_796_000_000_000_000,
            latency: Duration::from_micros(2_417),
            code: "UNAVAILABLE",
            sent_after: Duration::from_micros(1_130),
        };
        assert_eq!(sample.line(), "1796000000000000\t2417\tUNAVAILABLE\t1130");
        assert_eq!(
            Sample::HEADER.split('\t').count(),
            sample.line().split('\t').count()
        );
    }

    #[test]
    fn a_check_is_late_only_beyond_two_milliseconds() {
        let mut schedule = Schedule::default();
        schedule.sent(Duration::ZERO);
        schedule.sent(Duration::from_micros(1_200));
        schedule.sent(LATE_AFTER);
        assert_eq!(schedule.late, 0);
        schedule.sent(Duration::from_micros(2_001));
        schedule.sent(Duration::from_millis(30));
        schedule.sent(Duration::from_millis(3));
        assert_eq!(schedule.late, 3);
        assert_eq!(schedule.max_behind, Duration::from_millis(30));
    }

    #[test]
    fn the_achieved_rate_is_the_offered_one_unless_answers_fell_behind() {
        let schedule = Schedule {
            offered_rate: 20.0,
            ..Schedule::default()
        };
        // 40 checks due over 1.95 s, the last answered 10 ms later: they kept up.
        let kept_up = schedule.achieved_rate(40, Duration::from_millis(1_960));
        assert!((kept_up - 20.0).abs() < 1e-9, "{kept_up}");
        // The last answer 4 s after the start: 10 answers a second.
        let behind = schedule.achieved_rate(40, Duration::from_secs(4));
        assert!((behind - 10.0).abs() < 1e-9, "{behind}");
        assert_eq!(schedule.achieved_rate(0, Duration::from_secs(2)), 0.0);
    }

    #[test]
    fn rates_are_positive_numbers_or_half_the_peak() {
        assert_eq!(parse_rate("20"), Ok(Rate::PerSecond(20.0)));
        assert_eq!(parse_rate("0.5"), Ok(Rate::PerSecond(0.5)));
        assert_eq!(parse_rate("half-peak"), Ok(Rate::HalfPeak));
        for bad in ["0", "-3", "NaN", "inf", "fast", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
