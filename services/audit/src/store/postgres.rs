//! The log in Postgres. The sequencer is a transaction-scoped advisory lock, so replicas
//! append one at a time and indexes have no gaps and no reordering.

use std::collections::HashMap;

use cpis_merkle::Hash;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Postgres, Row};
use uuid::Uuid;

use super::sequencer::{self, LogTransaction, NewRow};
use super::{
    Appended, AuditStore, Columns, EventFilter, PendingEvent, StoreError, StoredCheckpoint,
    StoredEvent, check_row, hash_of, to_i64, to_u64,
};

/// The advisory lock key of the sequencer ("cpis-audit" as a number, fixed for ever).
const SEQUENCER_LOCK: i64 = 0x6370_6973_6175_6469;

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PgAuditStore {
    pool: PgPool,
}

impl PgAuditStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The log's size and which of a batch's event ids are in it already, in one round trip: a
/// row for each known id, or one row of NULLs beside the size when none is known.
///
/// Run as an unnamed statement, planned with the batch's ids each time: a plan kept for the
/// connection is made while the log is small (a sequential scan is then cheapest) and would
/// scan the whole log for every batch once it has grown, wherever no ANALYZE has run since
/// (autovacuum off, or behind).
const SIZE_AND_EXISTING: &str = "\
SELECT s.size, e.event_id, e.idx
FROM (SELECT COALESCE(MAX(idx) + 1, 0) AS size FROM audit_events) AS s
LEFT JOIN audit_events AS e ON e.event_id = ANY($1)";

/// Begins an append: the transaction and the sequencer's lock in one round trip.
static BEGIN_SEQUENCED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("BEGIN; SELECT pg_advisory_xact_lock({SEQUENCER_LOCK})"));

/// A batch's events and the stored hashes they add, in one statement with array parameters:
/// one statement text whatever the batch size, prepared once per connection.
const INSERT: &str = "\
WITH events AS (
    INSERT INTO audit_events (idx, event_id, leaf_data, subject_nhs_number, actor,
        actor_organisation, action, event_time_us, trace_id, append_time_us)
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bytea[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::bigint[], $9::text[], $10::bigint[])
)
INSERT INTO stored_hashes (idx, hash) SELECT * FROM unnest($11::bigint[], $12::bytea[])";

struct PgLog<'c>(&'c mut PgConnection);

impl LogTransaction for PgLog<'_> {
    async fn size(&mut self) -> Result<u64, StoreError> {
        let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events")
            .fetch_one(&mut *self.0)
            .await?;
        Ok(to_u64(size))
    }

    async fn size_and_existing(
        &mut self,
        ids: &[Uuid],
    ) -> Result<(u64, HashMap<Uuid, u64>), StoreError> {
        let rows = sqlx::query(SIZE_AND_EXISTING)
            // Planned for each batch (see SIZE_AND_EXISTING).
            .persistent(false)
            .bind(ids)
            .fetch_all(&mut *self.0)
            .await?;
        let mut size = 0;
        let mut known = HashMap::new();
        for row in &rows {
            size = to_u64(row.try_get::<i64, _>(0)?);
            if let (Some(id), Some(index)) = (
                row.try_get::<Option<Uuid>, _>(1)?,
                row.try_get::<Option<i64>, _>(2)?,
            ) {
                known.insert(id, to_u64(index));
            }
        }
        Ok((size, known))
    }

    async fn read_hashes(&mut self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&mut *self.0, indexes).await
    }

    async fn insert(&mut self, rows: &[NewRow], hashes: &[(u64, Hash)]) -> Result<(), StoreError> {
        let column = |f: fn(&NewRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(INSERT)
            .bind(rows.iter().map(|r| to_i64(r.index)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.leaf_data.as_slice())
                    .collect::<Vec<_>>(),
            )
            .bind(column(|r| r.columns.subject_nhs_number.as_deref()))
            .bind(column(|r| Some(r.columns.actor.as_str())))
            .bind(column(|r| r.columns.actor_organisation.as_deref()))
            .bind(column(|r| Some(r.columns.action.as_str())))
            .bind(
                rows.iter()
                    .map(|r| r.columns.event_time_us)
                    .collect::<Vec<_>>(),
            )
            .bind(column(|r| r.columns.trace_id.as_deref()))
            .bind(rows.iter().map(|r| r.append_time_us).collect::<Vec<_>>())
            .bind(hashes.iter().map(|(i, _)| to_i64(*i)).collect::<Vec<_>>())
            .bind(
                hashes
                    .iter()
                    .map(|(_, h)| h.as_bytes().as_slice())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }
}

async fn read_hashes(conn: &mut PgConnection, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
    let wanted: Vec<i64> = indexes.iter().map(|i| to_i64(*i)).collect();
    let rows = sqlx::query("SELECT idx, hash FROM stored_hashes WHERE idx = ANY($1)")
        // Planned for each read, as SIZE_AND_EXISTING is.
        .persistent(false)
        .bind(&wanted)
        .fetch_all(conn)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let index = to_u64(row.try_get(0)?);
        let bytes: Vec<u8> = row.try_get(1)?;
        found.insert(index, hash_of(index, &bytes)?);
    }
    indexes
        .iter()
        .map(|i| {
            found
                .get(i)
                .copied()
                .ok_or_else(|| StoreError::Merkle(format!("stored hash {i} is missing")))
        })
        .collect()
}

fn stored_event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let index = to_u64(row.try_get("idx")?);
    let event_id: Uuid = row.try_get("event_id")?;
    let columns = Columns {
        subject_nhs_number: row.try_get("subject_nhs_number")?,
        actor: row.try_get("actor")?,
        actor_organisation: row.try_get("actor_organisation")?,
        action: row.try_get("action")?,
        event_time_us: row.try_get("event_time_us")?,
        trace_id: row.try_get("trace_id")?,
    };
    check_row(
        index,
        &event_id.to_string(),
        row.try_get("leaf_data")?,
        &columns,
    )
}

fn checkpoint(row: &PgRow) -> Result<StoredCheckpoint, StoreError> {
    let tree_size = to_u64(row.try_get("tree_size")?);
    let root: Vec<u8> = row.try_get("root_hash")?;
    Ok(StoredCheckpoint {
        tree_size,
        root_hash: hash_of(tree_size, &root)?,
        signed_note: row.try_get("signed_note")?,
        create_time_us: row.try_get("create_time_us")?,
    })
}

impl AuditStore for PgAuditStore {
    async fn append(
        &self,
        events: Vec<PendingEvent>,
        recorded_by: &str,
    ) -> Result<Vec<Appended>, StoreError> {
        // The sequencer: one appender at a time across every replica, until commit.
        let mut tx = self.pool.begin_with(BEGIN_SEQUENCED.as_str()).await?;
        let appended = sequencer::append(&mut PgLog(&mut tx), events, recorded_by).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn size(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        PgLog(&mut conn).size().await
    }

    async fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_hashes(&mut conn, indexes).await
    }

    async fn find_index(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        let index: Option<i64> =
            sqlx::query_scalar("SELECT idx FROM audit_events WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(index.map(to_u64))
    }

    async fn events(
        &self,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut query = super::events_query::<Postgres>(filter, limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(stored_event).collect()
    }

    async fn insert_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, root_hash, signed_note, create_time_us) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(to_i64(checkpoint.tree_size))
        .bind(checkpoint.root_hash.as_bytes().to_vec())
        .bind(&checkpoint.signed_note)
        .bind(checkpoint.create_time_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoint(
        &self,
        tree_size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = match tree_size {
            Some(size) => {
                sqlx::query("SELECT * FROM checkpoints WHERE tree_size = $1")
                    .bind(to_i64(size))
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(checkpoint).transpose()
    }
}
