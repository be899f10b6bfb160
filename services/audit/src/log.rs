//! The Merkle log over a store: roots and proofs read O(log n) stored hashes in one round
//! trip; checkpoints are signed every so often and kept for ever.

use std::time::Duration;

use cpis_merkle::{
    Checkpoint, CheckpointSigner, Hash, prove_record_from, prove_record_indexes, prove_tree_from,
    prove_tree_indexes, tree_hash_from, tree_hash_indexes,
};
use cpis_mesh::Shutdown;
use tokio::sync::Notify;

use crate::store::{AuditStore, StoreError, StoredCheckpoint};

fn merkle(error: cpis_merkle::Error) -> StoreError {
    StoreError::Merkle(error.to_string())
}

/// The root hash of the first `size` events.
pub async fn root<S: AuditStore>(store: &S, size: u64) -> Result<Hash, StoreError> {
    let indexes = tree_hash_indexes(size).map_err(merkle)?;
    let hashes = store.read_hashes(&indexes).await?;
    tree_hash_from(size, &hashes).map_err(merkle)
}

/// The inclusion proof of event `index` in the tree of `size` events.
pub async fn inclusion_proof<S: AuditStore>(
    store: &S,
    size: u64,
    index: u64,
) -> Result<Vec<Hash>, StoreError> {
    let indexes = prove_record_indexes(size, index).map_err(merkle)?;
    let hashes = store.read_hashes(&indexes).await?;
    prove_record_from(size, index, &hashes).map_err(merkle)
}

/// The leaf hash of event `index`.
pub async fn leaf_hash<S: AuditStore>(store: &S, index: u64) -> Result<Hash, StoreError> {
    let stored = store
        .read_hashes(&[cpis_merkle::stored_hash_index(0, index)])
        .await?;
    stored
        .first()
        .copied()
        .ok_or_else(|| StoreError::Merkle(format!("leaf {index} is missing")))
}

/// The consistency proof from the tree of `old` events to the tree of `new` events.
pub async fn consistency_proof<S: AuditStore>(
    store: &S,
    new: u64,
    old: u64,
) -> Result<Vec<Hash>, StoreError> {
    let indexes = prove_tree_indexes(new, old).map_err(merkle)?;
    let hashes = store.read_hashes(&indexes).await?;
    prove_tree_from(new, old, &hashes).map_err(merkle)
}

/// When checkpoints are made.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// At least this often while the log grows.
    pub interval: Duration,
    /// And as soon as this many events were appended since the last one.
    pub every_events: u64,
}

/// Signs a checkpoint of the log as it is now, unless one of this size exists.
pub async fn checkpoint_now<S: AuditStore>(
    store: &S,
    signer: &CheckpointSigner,
    origin: &str,
) -> Result<StoredCheckpoint, StoreError> {
    let size = store.size().await?;
    if let Some(existing) = store.checkpoint(Some(size)).await? {
        return Ok(existing);
    }
    let root_hash = root(store, size).await?;
    let checkpoint =
        Checkpoint::new(origin, size, root_hash).map_err(|e| StoreError::Merkle(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc();
    let stored = StoredCheckpoint {
        tree_size: size,
        root_hash,
        signed_note: signer.sign(&checkpoint),
        create_time_us: now.unix_timestamp() * 1_000_000 + i64::from(now.microsecond()),
    };
    store.insert_checkpoint(&stored).await?;
    Ok(stored)
}

/// The pace of checkpoints signed for requests (the checkpointer signs its own on its
/// policy, besides).
#[derive(Debug, Default)]
pub(crate) struct RequestCheckpoints {
    /// The least time between two of them.
    pub(crate) min_gap: std::time::Duration,
    /// When the last one was signed.
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Held while deciding and signing.
    pub(crate) signing: tokio::sync::Mutex<()>,
}

impl RequestCheckpoints {
    /// Checkpoints for requests at most one per `min_gap` (zero: one whenever the log grew).
    pub(crate) fn new(min_gap: std::time::Duration) -> Self {
        Self {
            min_gap,
            ..Self::default()
        }
    }

    /// How long until the next one may be signed.
    pub(crate) fn gap_left(&self) -> std::time::Duration {
        let last = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.map(|t| self.min_gap.saturating_sub(t.elapsed()))
            .unwrap_or_default()
    }

    /// Notes that one was signed now.
    pub(crate) fn signed_now(&self) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }
}

/// Makes checkpoints per `policy` until shutdown: after `every_events` appends (signalled
/// through `appended`) or `interval`, whichever comes first, when the log grew. Cost is
/// independent of the log's size: one root from O(log n) stored hashes and one signature.
pub fn spawn_checkpointer<S: AuditStore>(
    store: S,
    signer: std::sync::Arc<CheckpointSigner>,
    origin: String,
    policy: CheckpointPolicy,
    appended: std::sync::Arc<Notify>,
    pending: std::sync::Arc<std::sync::atomic::AtomicU64>,
    shutdown: Shutdown,
) {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = appended.notified() => {
                    if pending.load(Ordering::SeqCst) < policy.every_events {
                        continue;
                    }
                }
                () = shutdown.requested() => break,
            }
            pending.store(0, Ordering::SeqCst);
            match checkpoint_now(&store, &signer, &origin).await {
                Ok(c) => tracing::debug!(tree_size = c.tree_size, "checkpoint"),
                Err(error) => {
                    tracing::warn!(%error, "checkpoint failed; retrying at the next tick")
                }
            }
        }
        // A last checkpoint so that a clean stop leaves every event covered.
        if let Err(error) = checkpoint_now(&store, &signer, &origin).await {
            tracing::warn!(%error, "final checkpoint failed");
        }
    });
}
