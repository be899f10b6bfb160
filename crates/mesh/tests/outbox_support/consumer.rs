//! The test destination: idempotent by event id, switchable down, refusing poison, and
//! watching for an event shipped twice at the same time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpis_mesh::outbox::{OutboxEvent, OutboxSink, SinkError};
use futures_util::future::BoxFuture;
use uuid::Uuid;

/// The payload the test consumer refuses as bad content.
pub const POISON: &[u8] = b"poison";

#[derive(Default)]
struct ConsumerState {
    up: AtomicBool,
    delay_ms: AtomicUsize,
    deliveries: Mutex<Vec<Uuid>>,
    in_flight: Mutex<HashSet<Uuid>>,
    overlaps: AtomicUsize,
    calls: AtomicUsize,
}

/// A destination idempotent by event id: it records every delivery, duplicates included,
/// and what it would have stored (the first of each id). While "down" it fails with a
/// retryable error; it refuses [`POISON`] as bad content; it notices an event being
/// delivered twice at the same time.
#[derive(Clone, Default)]
pub struct Consumer {
    state: Arc<ConsumerState>,
    hang: bool,
    accepted: Arc<AtomicUsize>,
}

impl Consumer {
    pub fn up() -> Self {
        let this = Self::default();
        this.set_up(true);
        this
    }

    pub fn down() -> Self {
        Self::default()
    }

    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// Each delivery takes `delay`.
    pub fn slow(self, delay: Duration) -> Self {
        self.state
            .delay_ms
            .store(delay.as_millis() as usize, Ordering::SeqCst);
        self
    }

    /// The same destination, seen by a relay that dies after the destination stored a
    /// batch and before it heard back.
    pub fn hanging(&self) -> Self {
        Self {
            state: self.state.clone(),
            hang: true,
            accepted: Arc::default(),
        }
    }

    /// The same destination, counting separately the batches this view accepted.
    pub fn view(&self) -> Self {
        Self {
            state: self.state.clone(),
            hang: self.hang,
            accepted: Arc::default(),
        }
    }

    /// Batches this view accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every id received, duplicates included, in order of arrival.
    pub fn deliveries(&self) -> Vec<Uuid> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// What the consumer stored: the first arrival of each id, in order.
    pub fn stored(&self) -> Vec<Uuid> {
        let mut seen = HashSet::new();
        self.deliveries()
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect()
    }

    /// How often an event arrived while another delivery of it was in flight.
    pub fn overlaps(&self) -> usize {
        self.state.overlaps.load(Ordering::SeqCst)
    }

    /// Delivery attempts, failed ones included.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }
}

/// Marks events in flight for as long as it lives, even when the delivery is abandoned.
struct InFlight<'a> {
    state: &'a ConsumerState,
    ids: Vec<Uuid>,
}

impl<'a> InFlight<'a> {
    fn enter(state: &'a ConsumerState, ids: Vec<Uuid>) -> Self {
        let mut in_flight = state.in_flight.lock().unwrap();
        for id in &ids {
            if !in_flight.insert(*id) {
                state.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        Self { state, ids }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.state.in_flight.lock().unwrap();
        for id in &self.ids {
            in_flight.remove(id);
        }
    }
}

impl OutboxSink for Consumer {
    fn deliver(&self, events: Vec<OutboxEvent>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.state.calls.fetch_add(1, Ordering::SeqCst);
            if !self.state.up.load(Ordering::SeqCst) {
                return Err(SinkError::Retryable("test destination down".to_owned()));
            }
            if events.iter().any(|e| e.payload == POISON) {
                return Err(SinkError::Rejected("an event is poison".to_owned()));
            }
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            let _in_flight = InFlight::enter(&self.state, ids.clone());
            let delay = self.state.delay_ms.load(Ordering::SeqCst) as u64;
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.state.deliveries.lock().unwrap().extend(ids);
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.accepted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}
