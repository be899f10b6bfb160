//! The append algorithm both stores share: inside one transaction, holding the sequencer,
//! give each new event the next index and compute the Merkle hashes it adds.

use std::collections::HashMap;

use cpis_merkle::{
    Hash, leaf_hash, stored_hash_index, stored_hashes_for_record_from,
    stored_hashes_for_record_indexes,
};
use cpis_proto::audit::LogEntry;
use uuid::Uuid;

use super::{Appended, Columns, PendingEvent, StoreError, leaf_data};

/// A row to insert.
pub(crate) struct NewRow {
    pub(crate) index: u64,
    pub(crate) event_id: Uuid,
    pub(crate) leaf_data: Vec<u8>,
    pub(crate) columns: Columns,
    pub(crate) append_time_us: i64,
}

/// What the algorithm needs from a transaction that holds the sequencer.
pub(crate) trait LogTransaction {
    /// The number of events in the log.
    async fn size(&mut self) -> Result<u64, StoreError>;
    /// The number of events in the log, and the indexes of those of `ids` already in it.
    async fn size_and_existing(
        &mut self,
        ids: &[Uuid],
    ) -> Result<(u64, HashMap<Uuid, u64>), StoreError>;
    /// Stored hashes by index, in the order asked.
    async fn read_hashes(&mut self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;
    /// Inserts the rows and the stored hashes.
    async fn insert(&mut self, rows: &[NewRow], hashes: &[(u64, Hash)]) -> Result<(), StoreError>;
}

fn merkle(error: cpis_merkle::Error) -> StoreError {
    StoreError::Merkle(error.to_string())
}

/// Appends `events` not yet in the log, in order; a re-sent event (also twice in one batch)
/// is answered with its existing index.
pub(crate) async fn append<T: LogTransaction>(
    tx: &mut T,
    events: Vec<PendingEvent>,
    recorded_by: &str,
) -> Result<Vec<Appended>, StoreError> {
    let now = time::OffsetDateTime::now_utc();
    let append_time = prost_types::Timestamp {
        seconds: now.unix_timestamp(),
        nanos: i32::try_from(now.nanosecond()).unwrap_or_default(),
    };
    let append_time_us = now.unix_timestamp() * 1_000_000 + i64::from(now.microsecond());

    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let (mut next, mut known) = tx.size_and_existing(&ids).await?;
    // Hashes computed in this batch, so later records read them without a round trip.
    let mut fresh: HashMap<u64, Hash> = HashMap::new();
    let mut rows = Vec::new();
    let mut hashes = Vec::new();
    let mut results = Vec::with_capacity(events.len());

    for pending in events {
        if let Some(&index) = known.get(&pending.event_id) {
            results.push(Appended {
                event_id: pending.event_id,
                index,
                duplicate: true,
            });
            continue;
        }
        let index = next;
        let entry = LogEntry {
            index: super::to_i64(index),
            event: Some(pending.event),
            append_time: Some(append_time),
            recorded_by: recorded_by.to_owned(),
            leaf_data: Vec::new(),
        };
        let data = leaf_data(&entry);

        let needed = stored_hashes_for_record_indexes(index).map_err(merkle)?;
        let missing: Vec<u64> = needed
            .iter()
            .copied()
            .filter(|i| !fresh.contains_key(i))
            .collect();
        if !missing.is_empty() {
            let read = tx.read_hashes(&missing).await?;
            fresh.extend(missing.into_iter().zip(read));
        }
        let inputs = needed
            .iter()
            .map(|i| fresh.get(i).copied())
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| StoreError::Merkle(format!("hashes for record {index} missing")))?;
        let added =
            stored_hashes_for_record_from(index, leaf_hash(&data), &inputs).map_err(merkle)?;
        let first = stored_hash_index(0, index);
        for (offset, hash) in (0u64..).zip(added) {
            fresh.insert(first + offset, hash);
            hashes.push((first + offset, hash));
        }

        known.insert(pending.event_id, index);
        rows.push(NewRow {
            index,
            event_id: pending.event_id,
            leaf_data: data,
            columns: pending.columns,
            append_time_us,
        });
        results.push(Appended {
            event_id: pending.event_id,
            index,
            duplicate: false,
        });
        next += 1;
    }
    if !rows.is_empty() {
        tx.insert(&rows, &hashes).await?;
    }
    Ok(results)
}
