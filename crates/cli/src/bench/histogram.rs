//! A latency histogram of fixed log-linear buckets (as HDR histograms do): 32 buckets per
//! power of two, so any recorded value is known within about 3%, with constant memory and
//! O(1) recording, and histograms of several workers merge by adding their counts.

use std::time::Duration;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64` of microseconds.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

/// The bucket of `value`: values below [`SUB`] have their own; above, a power of two is
/// split into [`SUB`] equal parts.
fn bucket(value: u64) -> usize {
    if value < SUB {
        return usize::try_from(value).unwrap_or(0);
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BITS
    let shift = exponent - SUB_BITS;
    let sub = (value >> shift) & (SUB - 1);
    usize::try_from(SUB + u64::from(shift) * SUB + sub).unwrap_or(BUCKETS - 1)
}

/// The highest value that falls in bucket `index`.
fn highest(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let shift = (index - SUB) / SUB;
    let sub = (index - SUB) % SUB;
    let lowest = (SUB + sub) << shift;
    lowest.saturating_add((1u64 << shift) - 1)
}

impl Histogram {
    /// Records one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(slot) = self.counts.get_mut(bucket(micros)) {
            *slot += 1;
        }
        self.count += 1;
        self.sum += u128::from(micros);
        self.max = self.max.max(micros);
    }

    /// Adds `other`'s counts to this one's.
    pub(crate) fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// How many latencies were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The largest latency recorded (exact), in microseconds.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The mean latency in microseconds (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum as f64 / self.count as f64
    }

    /// The latency at `quantile` (0 to 1) in microseconds: the highest value of the bucket
    /// holding that rank, never above the maximum (0 when empty).
    pub(crate) fn quantile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest(index).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_three_percent_and_ordered() {
        let mut previous = 0;
        for value in (0..200_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let index = bucket(value);
            assert!(index >= previous, "{value}");
            previous = index;
            let high = highest(index);
            assert!(high >= value, "{value} <= {high}");
            assert!(
                (high - value) as f64 <= value as f64 / 32.0,
                "{value} in a bucket up to {high}"
            );
        }
        assert!(bucket(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_come_from_the_recorded_values() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5);
        assert!((50_000..=51_600).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((99_000..=100_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.max(), 100_000);

        let mut other = Histogram::default();
        other.record(Duration::from_secs(1));
        h.merge(&other);
        assert_eq!(h.count(), 101);
        assert_eq!(h.max(), 1_000_000);
        assert!((h.mean() - 59_900.99).abs() < 1.0, "{}", h.mean());
    }
}
