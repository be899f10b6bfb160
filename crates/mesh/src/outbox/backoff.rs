//! How long a failed row waits before its next attempt.

use std::time::Duration;

/// Exponential backoff with full jitter above a floor: after the `n`-th failed attempt a
/// row waits a delay drawn uniformly from `[base, min(cap, base * 2^n)]`.
///
/// The jitter spreads the retries of rows (and replicas) that failed together, so a
/// destination coming back is not hit by all of them at once; the floor keeps even the
/// first retry from being immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The shortest wait, and the unit of the exponential growth.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Backoff from `base` growing up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The largest wait after `failures` failed attempts.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let base = self.base.min(self.cap);
        base.saturating_mul(2u32.saturating_pow(failures))
            .min(self.cap)
    }

    /// A random wait after `failures` failed attempts (this one included).
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self.base.min(self.cap);
        let span = self.ceiling(failures).saturating_sub(base);
        // Spans beyond u64 nanoseconds (584 years) are not worth jittering precisely.
        let span_nanos = u128::from(u64::try_from(span.as_nanos()).unwrap_or(u64::MAX));
        let jitter = (span_nanos * u128::from(random_u62())) >> 62;
        base.saturating_add(Duration::from_nanos(
            u64::try_from(jitter).unwrap_or(u64::MAX),
        ))
    }
}

/// 62 uniformly random bits, from the operating system through a v4 UUID (which the mesh
/// already depends on), so no random-number crate is needed for jitter.
fn random_u62() -> u64 {
    // The low 64 bits of a v4 UUID hold the two variant bits on top, then 62 random bits.
    uuid::Uuid::new_v4().as_u64_pair().1 & (u64::MAX >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_the_floor_and_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for failures in 1..40 {
            let ceiling = backoff.ceiling(failures);
            assert!(ceiling <= Duration::from_secs(1));
            for _ in 0..50 {
                let delay = backoff.delay(failures);
                assert!(delay >= Duration::from_millis(100), "{delay:?}");
                assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            }
        }
        assert_eq!(backoff.ceiling(1), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(4), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_jittered() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        let delays: std::collections::HashSet<_> = (0..20).map(|_| backoff.delay(5)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn a_base_above_the_cap_is_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(backoff.delay(1), Duration::from_secs(1));
    }
}
