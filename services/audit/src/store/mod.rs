//! Where the log lives: one trait, a Postgres and an SQLite implementation.
//!
//! The store sequences events (one writer at a time), keeps the Merkle tree's stored hashes
//! beside them in the same transaction, and checks every row it reads against the bytes that
//! were hashed, so that a row changed behind the service's back is reported, not served.

use std::future::Future;

use cpis_merkle::Hash;
use cpis_proto::audit::{AuditEvent, LogEntry};
use prost::Message;
use uuid::Uuid;

pub mod postgres;
pub mod sqlite;

mod sequencer;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A row does not match the leaf data it was appended with: the log was changed.
    #[error("the event at index {index} does not match its recorded leaf data: {what}")]
    Corrupt {
        /// The index of the row.
        index: u64,
        /// What differs.
        what: String,
    },
    /// The stored Merkle hashes are incomplete or malformed.
    #[error("Merkle log: {0}")]
    Merkle(String),
}

/// An event ready to append, with its search columns.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// The event's UUID.
    pub event_id: Uuid,
    /// The event as its producer sent it (validated).
    pub event: AuditEvent,
    /// The search columns derived from it.
    pub columns: Columns,
}

/// The searchable columns of an event, derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// The child's NHS number, 10 digits.
    pub subject_nhs_number: Option<String>,
    /// The user id or workload that acted.
    pub actor: String,
    /// The organisation on whose behalf.
    pub actor_organisation: Option<String>,
    /// The action's dotted name.
    pub action: String,
    /// When it happened, microseconds since the epoch.
    pub event_time_us: i64,
    /// The producer's trace id.
    pub trace_id: Option<String>,
}

impl Columns {
    /// The columns of `event` (assumed validated).
    pub fn of(event: &AuditEvent) -> Self {
        use cpis_proto::audit::actor::Kind;
        let actor = event.actor.as_ref();
        let user = actor.and_then(|a| match &a.kind {
            Some(Kind::User(p)) => Some(p),
            _ => None,
        });
        let who = match actor.and_then(|a| a.kind.as_ref()) {
            Some(Kind::User(p)) => p.user_id.clone(),
            Some(Kind::Workload(w)) => w.clone(),
            None => String::new(),
        };
        let organisation = event
            .organisation
            .as_ref()
            .map(|o| o.value.clone())
            .or_else(|| {
                user.and_then(|p| p.organisation.as_ref())
                    .map(|o| o.value.clone())
            })
            .filter(|o| !o.is_empty());
        let time = event.event_time.unwrap_or_default();
        Self {
            subject_nhs_number: event
                .nhs_number
                .as_ref()
                .map(|n| n.value.clone())
                .filter(|n| !n.is_empty()),
            actor: who,
            actor_organisation: organisation,
            action: event.action.clone(),
            event_time_us: time.seconds * 1_000_000 + i64::from(time.nanos / 1_000),
            trace_id: event
                .trace_context
                .as_ref()
                .and_then(|t| t.traceparent.split('-').nth(1))
                .map(str::to_owned),
        }
    }
}

/// What an append did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's UUID.
    pub event_id: Uuid,
    /// Its index in the log.
    pub index: u64,
    /// Whether it was already in the log (and so not appended again).
    pub duplicate: bool,
}

/// One row of the log, checked against its leaf data.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The entry as it was hashed.
    pub entry: LogEntry,
    /// The exact bytes hashed into the leaf.
    pub leaf_data: Vec<u8>,
}

/// Filters of a query; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The child's NHS number (10 digits).
    pub subject_nhs_number: Option<String>,
    /// The actor (user id or workload).
    pub actor: Option<String>,
    /// The organisation.
    pub organisation: Option<String>,
    /// The action.
    pub action: Option<String>,
    /// Events at or after, microseconds.
    pub start_time_us: Option<i64>,
    /// Events before, microseconds.
    pub end_time_us: Option<i64>,
    /// The trace id.
    pub trace_id: Option<String>,
    /// First index to return.
    pub start_index: u64,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it commits to.
    pub tree_size: u64,
    /// The root hash of that tree.
    pub root_hash: Hash,
    /// The C2SP signed note.
    pub signed_note: String,
    /// When it was made, microseconds.
    pub create_time_us: i64,
}

/// The canonical bytes of an entry: the prost encoding of `LogEntry` without `leaf_data`.
/// prost encodes fields in number order and the message has no maps, so equal entries
/// always give equal bytes.
pub fn leaf_data(entry: &LogEntry) -> Vec<u8> {
    let mut canonical = entry.clone();
    canonical.leaf_data.clear();
    canonical.encode_to_vec()
}

/// Decodes a row's leaf data and checks it against the row's own index, id and columns.
pub fn check_row(
    index: u64,
    event_id: &str,
    leaf: Vec<u8>,
    columns: &Columns,
) -> Result<StoredEvent, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt {
        index,
        what: what.to_owned(),
    };
    let entry =
        LogEntry::decode(leaf.as_slice()).map_err(|_| corrupt("leaf data does not decode"))?;
    if u64::try_from(entry.index).ok() != Some(index) {
        return Err(corrupt("index"));
    }
    let event = entry.event.as_ref().ok_or_else(|| corrupt("no event"))?;
    if !event.event_id.eq_ignore_ascii_case(event_id) {
        return Err(corrupt("event id"));
    }
    if &Columns::of(event) != columns {
        return Err(corrupt("search columns"));
    }
    Ok(StoredEvent {
        entry,
        leaf_data: leaf,
    })
}

/// The `SELECT` of [`AuditStore::events`], the same text in both dialects.
pub(crate) fn events_query<'a, DB>(filter: &EventFilter, limit: u32) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::<DB>::new("SELECT * FROM audit_events WHERE idx >= ");
    query.push_bind(to_i64(filter.start_index));
    for (column, value) in [
        ("subject_nhs_number", &filter.subject_nhs_number),
        ("actor", &filter.actor),
        ("actor_organisation", &filter.organisation),
        ("action", &filter.action),
        ("trace_id", &filter.trace_id),
    ] {
        if let Some(value) = value {
            query
                .push(format!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(v) = filter.start_time_us {
        query.push(" AND event_time_us >= ").push_bind(v);
    }
    if let Some(v) = filter.end_time_us {
        query.push(" AND event_time_us < ").push_bind(v);
    }
    query
        .push(" ORDER BY idx LIMIT ")
        .push_bind(i64::from(limit));
    query
}

/// The log's storage.
pub trait AuditStore: Clone + Send + Sync + 'static {
    /// Appends the events that are not in the log yet, in order, under the single sequencer;
    /// `recorded_by` names this replica in each entry.
    fn append(
        &self,
        events: Vec<PendingEvent>,
        recorded_by: &str,
    ) -> impl Future<Output = Result<Vec<Appended>, StoreError>> + Send;

    /// The number of events in the log.
    fn size(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stored hashes by index, in the order asked.
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> impl Future<Output = Result<Vec<Hash>, StoreError>> + Send;

    /// The index of an event, by its UUID.
    fn find_index(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Events matching `filter` from `filter.start_index` on, in index order.
    fn events(
        &self,
        filter: &EventFilter,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Keeps a checkpoint (a second one of the same size is ignored).
    fn insert_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The checkpoint of the largest tree, or at exactly `tree_size`.
    fn checkpoint(
        &self,
        tree_size: Option<u64>,
    ) -> impl Future<Output = Result<Option<StoredCheckpoint>, StoreError>> + Send;
}

/// Decodes 32 stored bytes.
pub(crate) fn hash_of(index: u64, bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::from_slice(bytes)
        .map_err(|_| StoreError::Merkle(format!("stored hash {index} is not 32 bytes")))
}

/// Converts a stored non-negative BIGINT.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Converts an index for a BIGINT column (indexes stay far below 2^63).
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
