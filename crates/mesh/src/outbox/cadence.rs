//! When a relay loop claims: on ticks of one clock shared by every loop of the process, each
//! loop at its own offset within the period, so that their deliveries are spread over the
//! period instead of arriving together.
//!
//! Loops that each waited `linger` from the same wake-up (a commit wakes every loop of a
//! relay) delivered together, and kept doing so: audit's sequencer lock made the second of
//! two appends end just after the first, and both then waited the same `linger` again. Each
//! delivery costs its destination a burst of work (audit's `Append` of a hundred events is a
//! few milliseconds of Postgres), and on a machine the services share, bursts that coincide
//! take the cores from the checks: at 1,050 checks/s on two cores, the checks slower than
//! the 95th percentile were three times as likely as the others to overlap a delivery's end
//! (see `docs/performance.md`, change 18). With fixed offsets on a shared clock, the loops of
//! a process keep out of each other's way for good.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The golden ratio's fractional part: the `k`th loop's offset is `k` times this much of the
/// period (mod 1), so that each new loop lands in the largest gap the others left.
const SPREAD: f64 = 0.618_033_988_749_894_9;

/// The shared clock's origin: the first time any loop asked.
static ORIGIN: OnceLock<Instant> = OnceLock::new();
/// How many loops have taken a slot so far.
static LOOPS: AtomicU32 = AtomicU32::new(0);

/// One loop's ticks: `origin + offset + n × period`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cadence {
    origin: Instant,
    offset: Duration,
    period: Duration,
}

impl Cadence {
    /// The next loop's ticks on the process's shared clock.
    pub(super) fn next_loop(period: Duration) -> Self {
        let origin = *ORIGIN.get_or_init(Instant::now);
        Self::new(origin, LOOPS.fetch_add(1, Ordering::Relaxed), period)
    }

    /// The ticks of the `slot`th loop on a clock started at `origin`.
    fn new(origin: Instant, slot: u32, period: Duration) -> Self {
        Self {
            origin,
            offset: period.mul_f64((f64::from(slot) * SPREAD).fract()),
            period,
        }
    }

    /// The first tick after `now` (`now` itself for a zero period: no waiting).
    pub(super) fn next_after(&self, now: Instant) -> Instant {
        let period = self.period.as_nanos();
        if period == 0 {
            return now;
        }
        let first = self.origin + self.offset;
        if now < first {
            return first;
        }
        let ticks = (now - first).as_nanos() / period + 1;
        // A period of a few ms and a process running for years stay far below u64 nanos.
        first + Duration::from_nanos(u64::try_from(ticks * period).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(100);

    fn offset_ms(slot: u32) -> f64 {
        Cadence::new(Instant::now(), slot, PERIOD)
            .offset
            .as_secs_f64()
            * 1000.0
    }

    #[test]
    fn the_loops_of_a_process_are_spread_over_the_period() {
        // A service has one or two loops (attendance: audit and notification); `cpis dev`
        // five (four services' relays, attendance's with two). The smallest gap between
        // neighbours, as a share of the period:
        let smallest_gap = |loops: u32| {
            let mut offsets: Vec<f64> = (0..loops).map(offset_ms).collect();
            offsets.sort_by(f64::total_cmp);
            let wrap = 100.0 - offsets[offsets.len() - 1] + offsets[0];
            let gaps = offsets.windows(2).map(|w| w[1] - w[0]);
            gaps.chain(std::iter::once(wrap)).fold(f64::MAX, f64::min) / 100.0
        };
        assert!(smallest_gap(2) > 0.38);
        assert!(smallest_gap(3) > 0.23);
        assert!(smallest_gap(5) > 0.14);
        assert_eq!(offset_ms(0), 0.0);
        assert!(offset_ms(1) > 60.0 && offset_ms(1) < 62.0);
    }

    #[test]
    fn the_next_tick_is_on_the_loops_grid_and_within_a_period() {
        let origin = Instant::now();
        let cadence = Cadence::new(origin, 1, PERIOD);
        let offset = cadence.offset;
        for after_ms in [0, 1, 61, 62, 100, 161, 162, 250, 10_000] {
            let now = origin + Duration::from_millis(after_ms);
            let tick = cadence.next_after(now);
            assert!(tick > now || (now < origin + offset && tick == origin + offset));
            assert!(tick - now <= PERIOD, "{after_ms} ms: {:?}", tick - now);
            let on_grid = (tick - origin - offset).as_nanos() % PERIOD.as_nanos();
            assert_eq!(on_grid, 0, "{after_ms} ms");
        }
        // Exactly on a tick: the next one, a whole period later.
        let on_tick = origin + offset + PERIOD;
        assert_eq!(cadence.next_after(on_tick), on_tick + PERIOD);
    }

    #[test]
    fn a_zero_period_never_waits() {
        let now = Instant::now();
        let cadence = Cadence::new(now, 3, Duration::ZERO);
        assert_eq!(cadence.next_after(now + PERIOD), now + PERIOD);
    }

    #[test]
    fn every_loop_takes_its_own_slot() {
        let period = Duration::from_secs(1);
        let first = Cadence::next_loop(period);
        let second = Cadence::next_loop(period);
        assert_eq!(first.origin, second.origin);
        assert_ne!(first.offset, second.offset);
    }
}
