//! The outbox's metrics: what waits, for how long, what was shipped and what failed.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::DestinationStats;
use crate::metrics::{Labels, Metrics};

/// The outbox families in a process's registry, labelled by destination only.
///
/// Register them once per [`Metrics`] and hand clones to every relay of the process: a
/// second registration would list the families twice.
#[derive(Debug, Clone)]
pub struct OutboxMetrics {
    depth: Family<Labels, Gauge>,
    oldest_age: Family<Labels, Gauge<f64, AtomicU64>>,
    delivered: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
}

impl OutboxMetrics {
    /// Registers `cpis_outbox_depth`, `cpis_outbox_oldest_age_seconds`,
    /// `cpis_outbox_delivered_total` and `cpis_outbox_failures_total` in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            depth: Family::default(),
            oldest_age: Family::default(),
            delivered: Family::default(),
            failures: Family::default(),
        };
        let mut registry = metrics.registry();
        registry.register(
            "cpis_outbox_depth",
            "Outbox rows not yet confirmed by their destination",
            this.depth.clone(),
        );
        registry.register(
            "cpis_outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet confirmed (0 when none)",
            this.oldest_age.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "cpis_outbox_delivered",
            "Outbox events their destination confirmed",
            this.delivered.clone(),
        );
        registry.register(
            "cpis_outbox_failures",
            "Outbox events whose delivery attempt failed (each is retried)",
            this.failures.clone(),
        );
        this
    }

    /// Sets the gauges of `destination`.
    pub fn observe(&self, destination: &str, stats: DestinationStats) {
        let labels = labels(destination);
        self.depth
            .get_or_create(&labels)
            .set(i64::try_from(stats.depth).unwrap_or(i64::MAX));
        self.oldest_age
            .get_or_create(&labels)
            .set(stats.oldest_age.as_secs_f64());
    }

    /// Counts events of `destination` confirmed.
    pub fn delivered(&self, destination: &str, events: usize) {
        self.delivered
            .get_or_create(&labels(destination))
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }

    /// Counts events of `destination` whose delivery failed.
    pub fn failed(&self, destination: &str, events: usize) {
        self.failures
            .get_or_create(&labels(destination))
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }
}

fn labels(destination: &str) -> Labels {
    vec![("destination", destination.to_owned())]
}
