//! Retention over time: until when a check's flags keep the child's attendances, and the
//! background sweep that deletes them once no flag does.
//!
//! Every check learns the child's flags (history included) from the flag registry, so it
//! sets, for all the child's attendances, the moment they stop being retained
//! ([`retained_until`]): the latest end date plus `retention_history` of the flags that
//! retain them; open (`None`) while a retaining flag has no end date; now when no flag
//! retains them any more. The sweep deletes, in batches, the attendances whose moment has
//! passed.

use std::time::Duration;

use cpis_domain::{FlagState, RetentionPolicy};
use cpis_mesh::Shutdown;
use cpis_mesh::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use time::{Date, OffsetDateTime};

use crate::store::{AttendanceStore, StoreError};

/// One day, in microseconds.
const DAY_US: i64 = 86_400 * 1_000_000;

/// Until when (microseconds since the epoch) flags that retain a child's attendances keep
/// them, given as `(state, end date)` of the retaining flags only, at `now_us`:
///
/// - no retaining flag: `Some(now_us)`: the attendances are due for deletion;
/// - a retaining flag without an end date (or one beyond the calendar): `None`, open;
/// - otherwise the latest end date plus the history window, and at least one day from now
///   for a flag that is not yet history (the flag registry decides how long a flag stays
///   recently ended; a history window shorter than that must not delete attendances a
///   recently ended flag still retains before the next check says so).
pub fn retained_until(
    policy: &RetentionPolicy,
    retaining: impl IntoIterator<Item = (FlagState, Option<Date>)>,
    now_us: i64,
) -> Option<i64> {
    let mut until: Option<i64> = None;
    let mut any = false;
    for (state, end) in retaining {
        any = true;
        let limit = end
            .and_then(|end| policy.history.after(end))
            .map(midnight_us);
        let mut limit = limit?;
        if state != FlagState::History {
            limit = limit.max(now_us.saturating_add(DAY_US));
        }
        until = Some(until.map_or(limit, |u| u.max(limit)));
    }
    if any { until } else { Some(now_us) }
}

/// The start of `date` (UTC), in microseconds since the epoch.
fn midnight_us(date: Date) -> i64 {
    let at = date.midnight().assume_utc();
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The sweep's metrics: `cpis_attendance_retention_swept_total` (attendances deleted) and
/// `cpis_attendance_retention_sweep_failures_total`.
#[derive(Debug, Clone, Default)]
pub struct SweepMetrics {
    swept: Counter,
    failures: Counter,
}

impl SweepMetrics {
    /// Registers the counters in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        let mut registry = metrics.registry();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "cpis_attendance_retention_swept",
            "Attendances deleted by the retention sweep once no flag retained them",
            this.swept.clone(),
        );
        registry.register(
            "cpis_attendance_retention_sweep_failures",
            "Retention sweeps that failed (retried at the next interval)",
            this.failures.clone(),
        );
        this
    }

    /// Attendances deleted so far.
    pub fn swept(&self) -> u64 {
        self.swept.get()
    }
}

/// The retention sweep over a store.
#[derive(Debug, Clone)]
pub struct RetentionSweep<S> {
    /// The store swept.
    pub store: S,
    /// Attendances deleted per statement.
    pub batch: u32,
    /// Time between sweeps.
    pub interval: Duration,
    /// Its counters.
    pub metrics: SweepMetrics,
}

impl<S: AttendanceStore> RetentionSweep<S> {
    /// Deletes every attendance whose retention ended at or before `now_us`, a batch at a
    /// time (short transactions, so checks are not held up); returns how many.
    pub async fn sweep(&self, now_us: i64) -> Result<u64, StoreError> {
        let batch = i64::from(self.batch.max(1));
        let mut total = 0;
        loop {
            let deleted = self.store.sweep(now_us, batch).await?;
            total += deleted;
            self.metrics.swept.inc_by(deleted);
            // A short batch: nothing more is due (another replica may have taken a share).
            if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
                return Ok(total);
            }
        }
    }

    /// Sweeps now and then every `interval` until shutdown.
    pub fn spawn(self, shutdown: Shutdown) {
        tokio::spawn(async move {
            loop {
                match self.sweep(now_us()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "attendances no flag retains deleted"),
                    Err(e) => {
                        self.metrics.failures.inc();
                        tracing::warn!(error = %e, "retention sweep failed");
                    }
                }
                tokio::select! {
                    () = shutdown.requested() => return,
                    () = tokio::time::sleep(self.interval) => {}
                }
            }
        });
    }
}

fn now_us() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use cpis_domain::Window;
    use time::Month;

    use super::*;

    fn date(year: i32, month: Month, day: u8) -> Date {
        Date::from_calendar_date(year, month, day).unwrap()
    }

    #[test]
    fn retention_ends_with_the_latest_flag_plus_the_history_window() {
        let policy = RetentionPolicy {
            history: Window::Months(24),
        };
        let now = midnight_us(date(2026, Month::November, 25));
        // No retaining flag: due now.
        assert_eq!(retained_until(&policy, [], now), Some(now));
        // An open flag keeps them open, whatever else ended.
        let ended = (FlagState::History, Some(date(2025, Month::January, 10)));
        assert_eq!(
            retained_until(&policy, [ended, (FlagState::Current, None)], now),
            None
        );
        // History: end date plus 24 months; the latest of several.
        let later = (FlagState::History, Some(date(2025, Month::March, 1)));
        assert_eq!(
            retained_until(&policy, [ended, later], now),
            Some(midnight_us(date(2027, Month::March, 1)))
        );
        // A recently ended flag under a short history window: at least a day from now.
        let short = RetentionPolicy {
            history: Window::Days(1),
        };
        let recent = (
            FlagState::RecentlyEnded,
            Some(date(2026, Month::October, 1)),
        );
        assert_eq!(retained_until(&short, [recent], now), Some(now + DAY_US));
    }
}
