//! The relay: claims each destination's due rows in creation order, delivers them through
//! the destination's sink, then deletes them (confirmed) or returns them with backoff.
//!
//! Several relays (replicas) may share one outbox: a row is shipped only under its lease,
//! and every delivery ends (or is abandoned) well before the lease does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::cadence::Cadence;
use super::{
    Backoff, Claim, Lease, OutboxEvent, OutboxMetrics, OutboxSink, OutboxStore, Retry, SinkError,
};
use crate::shutdown::Shutdown;

/// The longest the backlog gauges go without a refresh while the relay is busy.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest `last_error` kept: enough to diagnose, bounded whatever a destination answers.
const MAX_ERROR_LEN: usize = 1000;

/// Events per claim and delivery, unless configured (`CPIS_OUTBOX_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: usize = 250;
/// The period of deliveries under load, unless configured (`CPIS_OUTBOX_LINGER`).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(100);
/// How often an idle relay looks, unless configured (`CPIS_OUTBOX_POLL_INTERVAL`).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How a relay works.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Names the relay in leases (`claimed_by`) and logs; unique per relay. By default the
    /// `HOSTNAME` (a pod's name) and a random suffix.
    pub relay_id: String,
    /// Rows per claim and delivery. A loop claims again at once after a full batch, so a
    /// batch should hold what arrives in one `linger` at the expected rate: two deliveries
    /// back to back cost the destination two commits for one period's events.
    pub batch_size: usize,
    /// How often an idle relay looks for rows written by other processes, or due again.
    pub poll_interval: Duration,
    /// The period of a loop's deliveries. A loop woken by a producer's commit claims at its
    /// next tick, so that the commits that follow join the batch: under a steady load one
    /// delivery (and one commit at the destination) carries many events instead of one or
    /// two each, once per period whatever the load. The loops of a process tick on one
    /// clock, each at its own offset within the period, so that their deliveries do not
    /// coincide (see `cadence`). Each delivery costs the destination a commit and several
    /// statements: the default, 100 ms, keeps that cost a small share of the machine (at
    /// 20 ms, audit and notification cost a check a fifth more CPU on a 2-core machine)
    /// while an event still arrives within a tenth of a second.
    pub linger: Duration,
    /// How long a claim holds its rows. A delivery is abandoned after half of it, so that
    /// no other relay can claim a row while it is still being shipped.
    pub lease: Duration,
    /// The wait of a failed row before its next attempt.
    pub backoff: Backoff,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            relay_id: default_relay_id(),
            batch_size: DEFAULT_BATCH_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            linger: DEFAULT_LINGER,
            lease: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }
}

impl From<&crate::config::OutboxSection> for RelaySettings {
    /// The configured batch size, linger and poll interval; the rest as by default.
    fn from(section: &crate::config::OutboxSection) -> Self {
        Self {
            batch_size: section.batch_size,
            linger: section.linger.get(),
            poll_interval: section.poll_interval.get(),
            ..Self::default()
        }
    }
}

fn default_relay_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}", &suffix[..8])
}

/// Wakes a relay at once, e.g. right after a producer committed outbox rows; without it the
/// relay finds them at its next poll.
#[derive(Debug, Clone)]
pub struct OutboxNotifier(Arc<watch::Sender<u64>>);

impl OutboxNotifier {
    /// Wakes every destination loop of the relay. Call it after the commit: rows of an
    /// open transaction are not visible to the relay yet.
    pub fn notify(&self) {
        // A counter, not a flag: a wake-up sent while a loop is busy is seen when it next
        // waits, never lost.
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Ships the outbox's rows to their destinations. Build it, add a sink per destination,
/// [`spawn`](Self::spawn) it.
pub struct OutboxRelay {
    store: Arc<dyn OutboxStore>,
    sinks: Vec<(String, Arc<dyn OutboxSink>)>,
    settings: RelaySettings,
    metrics: OutboxMetrics,
    wake: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("store", &self.store)
            .field(
                "destinations",
                &self.sinks.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            )
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay {
    /// A relay over `store`, counting into `metrics`, with no destination yet.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        metrics: OutboxMetrics,
        settings: RelaySettings,
    ) -> Self {
        Self {
            store,
            sinks: Vec::new(),
            settings,
            metrics,
            wake: Arc::new(watch::channel(0).0),
        }
    }

    /// Ships the rows of `destination` through `sink` (replacing an earlier sink of it).
    pub fn with_sink(mut self, destination: impl Into<String>, sink: Arc<dyn OutboxSink>) -> Self {
        let destination = destination.into();
        self.sinks.retain(|(d, _)| *d != destination);
        self.sinks.push((destination, sink));
        self
    }

    /// A handle producers poke after writing rows, to be shipped without waiting for the
    /// next poll.
    pub fn notifier(&self) -> OutboxNotifier {
        OutboxNotifier(self.wake.clone())
    }

    /// The relay's settings.
    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    /// Runs the relay on a task until `shutdown`; a batch in flight is finished first.
    pub fn spawn(self, shutdown: Shutdown) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Runs the relay until `shutdown`: one loop per destination, all on this task, so that
    /// aborting the task stops every loop.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(
            relay = %self.settings.relay_id,
            destinations = self.sinks.len(),
            "outbox relay started"
        );
        let loops = self.sinks.iter().map(|(destination, sink)| {
            Destination {
                relay: &self,
                name: destination,
                sink: sink.as_ref(),
            }
            .run(&shutdown)
        });
        futures_util::future::join_all(loops).await;
        tracing::info!(relay = %self.settings.relay_id, "outbox relay stopped");
    }
}

/// One destination's loop.
struct Destination<'a> {
    relay: &'a OutboxRelay,
    name: &'a str,
    sink: &'a dyn OutboxSink,
}

impl Destination<'_> {
    async fn run(self, shutdown: &Shutdown) {
        let settings = &self.relay.settings;
        let batch_size = settings.batch_size.max(1);
        let mut wake = self.relay.wake.subscribe();
        // The backlog gauges are read at most once per poll interval (and at most once a
        // second): under load the relay claims many times a second, and counting the
        // backlog each time cost the database as much as the claims themselves.
        let stats_every = settings.poll_interval.min(STATS_INTERVAL);
        let mut observed: Option<Instant> = None;
        let cadence = Cadence::next_loop(settings.linger);
        while !shutdown.is_requested() {
            if observed.is_none_or(|at| at.elapsed() >= stats_every) {
                observed = Some(Instant::now());
                self.observe().await;
            }
            // Before the claim, so that our reckoning of the lease never outlasts the
            // database's.
            let claimed_at = Instant::now();
            let claim = self
                .relay
                .store
                .claim(self.name, batch_size, &settings.relay_id, settings.lease)
                .await;
            let full = match claim {
                Ok(claim) if claim.events.is_empty() => false,
                Ok(claim) => {
                    let full = claim.events.len() >= batch_size;
                    self.ship(claim, claimed_at).await;
                    full
                }
                Err(error) => {
                    tracing::warn!(destination = self.name, %error, "cannot claim outbox rows");
                    false
                }
            };
            // A full batch suggests more are due: claim again at once.
            if full {
                continue;
            }
            tokio::select! {
                () = shutdown.requested() => break,
                Ok(()) = wake.changed() => {
                    let tick = cadence.next_after(Instant::now());
                    tokio::select! {
                        () = shutdown.requested() => break,
                        () = tokio::time::sleep_until(tick) => {}
                    }
                }
                () = tokio::time::sleep(settings.poll_interval) => {}
            }
        }
    }

    async fn observe(&self) {
        match self.relay.store.stats(self.name).await {
            Ok(stats) => self.relay.metrics.observe(self.name, stats),
            Err(error) => tracing::debug!(destination = self.name, %error, "no outbox stats"),
        }
    }

    async fn ship(&self, claim: Claim, claimed_at: Instant) {
        let Claim { lease, events } = claim;
        let span = tracing::info_span!(
            parent: None,
            "outbox.deliver",
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            destination = self.name,
            relay = %self.relay.settings.relay_id,
            events = events.len(),
        );
        // Links, not a parent: the batch serves many traces, and each of them is joined.
        for event in &events {
            if let Some(producer) = event.span_context() {
                span.add_link(producer);
            }
        }
        let shipped = async {
            match self.deliver(events.clone()).await {
                Ok(()) => self.confirm(&events).await,
                Err(error) if error.is_rejection() && events.len() > 1 => {
                    self.one_by_one(&lease, events, claimed_at, &error).await;
                    false
                }
                Err(error) => {
                    self.release(&lease, &events, &error).await;
                    false
                }
            }
        };
        if !shipped.instrument(span.clone()).await {
            span.record("otel.status_code", "ERROR");
        }
    }

    /// After a rejected batch: each event alone, so that only the bad ones wait.
    async fn one_by_one(
        &self,
        lease: &Lease,
        events: Vec<OutboxEvent>,
        claimed_at: Instant,
        batch_error: &SinkError,
    ) {
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            if !self.may_deliver(claimed_at) {
                let rest: Vec<_> = std::iter::once(event).chain(events).collect();
                self.release(lease, &rest, batch_error).await;
                return;
            }
            let one = [event];
            match self.deliver(one.to_vec()).await {
                Ok(()) => {
                    self.confirm(&one).await;
                }
                Err(error) => self.release(lease, &one, &error).await,
            }
        }
    }

    /// Half the lease per delivery: the rest is margin for the confirm or release.
    fn delivery_timeout(&self) -> Duration {
        self.relay.settings.lease / 2
    }

    /// Whether a delivery started now still ends well within the lease.
    fn may_deliver(&self, claimed_at: Instant) -> bool {
        claimed_at.elapsed() + self.delivery_timeout() <= self.relay.settings.lease * 3 / 4
    }

    async fn deliver(&self, events: Vec<OutboxEvent>) -> Result<(), SinkError> {
        let timeout = self.delivery_timeout();
        tokio::time::timeout(timeout, self.sink.deliver(events))
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Retryable(format!(
                    "no confirmation within {timeout:?}"
                )))
            })
    }

    /// Deletes delivered rows; true when done.
    async fn confirm(&self, events: &[OutboxEvent]) -> bool {
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        match self.relay.store.confirm(&seqs).await {
            Ok(_) => {
                self.relay.metrics.delivered(self.name, events.len());
                tracing::debug!(
                    destination = self.name,
                    events = events.len(),
                    "outbox events delivered"
                );
                true
            }
            Err(error) => {
                // Delivered but still stored: shipped again once the lease expires, and
                // ignored as a duplicate by the destination.
                tracing::warn!(destination = self.name, events = events.len(), %error, "delivered outbox events not deleted");
                false
            }
        }
    }

    async fn release(&self, lease: &Lease, events: &[OutboxEvent], error: &SinkError) {
        let backoff = self.relay.settings.backoff;
        let retries: Vec<Retry> = events
            .iter()
            .map(|e| Retry {
                seq: e.seq,
                delay: backoff.delay(e.attempts.saturating_add(1)),
            })
            .collect();
        self.relay.metrics.failed(self.name, events.len());
        let attempts = events.iter().map(|e| e.attempts + 1).max().unwrap_or(1);
        // The destination's message names fields, never their values; events are counted,
        // not listed.
        tracing::warn!(
            destination = self.name,
            events = events.len(),
            attempts,
            %error,
            "outbox delivery failed; retrying with backoff"
        );
        let message = error.to_string();
        let message = truncate(&message, MAX_ERROR_LEN);
        if let Err(error) = self.relay.store.release(lease, &retries, message).await {
            // The rows stay leased until it expires, then are claimed again.
            tracing::warn!(destination = self.name, %error, "cannot release outbox rows");
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_character() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn the_configured_section_sets_batch_linger_and_poll() {
        let section = crate::config::OutboxSection {
            batch_size: 40,
            linger: crate::duration::HumanDuration::from_millis(20),
            poll_interval: crate::duration::HumanDuration::from_secs(5),
        };
        let settings = RelaySettings::from(&section);
        assert_eq!(settings.batch_size, 40);
        assert_eq!(settings.linger, Duration::from_millis(20));
        assert_eq!(settings.poll_interval, Duration::from_secs(5));
        assert_eq!(settings.lease, RelaySettings::default().lease);
    }

    #[test]
    fn default_ids_differ() {
        assert_ne!(default_relay_id(), default_relay_id());
    }
}
