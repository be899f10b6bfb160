//! The log in SQLite, the embedded default on one machine. SQLite has one writer at a time
//! and one process owns the file, so the sequencer is a lock in the process.

use std::collections::HashMap;

use cpis_merkle::Hash;
use std::sync::Arc;

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::sequencer::{self, LogTransaction, NewRow};
use super::{
    Appended, AuditStore, Columns, EventFilter, PendingEvent, StoreError, StoredCheckpoint,
    StoredEvent, check_row, hash_of, to_i64, to_u64,
};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteAuditStore {
    pool: SqlitePool,
    sequencer: Arc<Mutex<()>>,
}

impl SqliteAuditStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            sequencer: Arc::default(),
        }
    }
}

struct SqliteLog<'c>(&'c mut SqliteConnection);

fn in_list<'q, T>(query: &mut QueryBuilder<'q, Sqlite>, values: &'q [T])
where
    T: sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + Send + Sync + 'q,
{
    query.push(" IN (");
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    list.push_unseparated(")");
}

impl LogTransaction for SqliteLog<'_> {
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
        // Two statements: in process, a round trip costs next to nothing.
        let size = self.size().await?;
        if ids.is_empty() {
            return Ok((size, HashMap::new()));
        }
        let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT event_id, idx FROM audit_events WHERE event_id");
        in_list(&mut query, &texts);
        let rows = query.build().fetch_all(&mut *self.0).await?;
        let known = rows
            .iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let id = Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((id, to_u64(r.try_get::<i64, _>(1)?)))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((size, known))
    }

    async fn read_hashes(&mut self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&mut *self.0, indexes).await
    }

    async fn insert(&mut self, rows: &[NewRow], hashes: &[(u64, Hash)]) -> Result<(), StoreError> {
        // Batches are bounded by the API (at most 1000 events), well within bind limits.
        let mut events = QueryBuilder::<Sqlite>::new(
            "INSERT INTO audit_events (idx, event_id, leaf_data, subject_nhs_number, actor, \
             actor_organisation, action, event_time_us, trace_id, append_time_us) ",
        );
        events.push_values(rows, |mut b, row| {
            b.push_bind(to_i64(row.index))
                .push_bind(row.event_id.to_string())
                .push_bind(&row.leaf_data)
                .push_bind(&row.columns.subject_nhs_number)
                .push_bind(&row.columns.actor)
                .push_bind(&row.columns.actor_organisation)
                .push_bind(&row.columns.action)
                .push_bind(row.columns.event_time_us)
                .push_bind(&row.columns.trace_id)
                .push_bind(row.append_time_us);
        });
        events.build().execute(&mut *self.0).await?;
        let mut stored = QueryBuilder::<Sqlite>::new("INSERT INTO stored_hashes (idx, hash) ");
        stored.push_values(hashes, |mut b, (index, hash)| {
            b.push_bind(to_i64(*index))
                .push_bind(hash.as_bytes().to_vec());
        });
        stored.build().execute(&mut *self.0).await?;
        Ok(())
    }
}

async fn read_hashes(
    conn: &mut SqliteConnection,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<i64> = indexes.iter().map(|i| to_i64(*i)).collect();
    let mut query = QueryBuilder::<Sqlite>::new("SELECT idx, hash FROM stored_hashes WHERE idx");
    in_list(&mut query, &wanted);
    let rows = query.build().fetch_all(conn).await?;
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

fn stored_event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let index = to_u64(row.try_get("idx")?);
    let event_id: String = row.try_get("event_id")?;
    let columns = Columns {
        subject_nhs_number: row.try_get("subject_nhs_number")?,
        actor: row.try_get("actor")?,
        actor_organisation: row.try_get("actor_organisation")?,
        action: row.try_get("action")?,
        event_time_us: row.try_get("event_time_us")?,
        trace_id: row.try_get("trace_id")?,
    };
    check_row(index, &event_id, row.try_get("leaf_data")?, &columns)
}

fn checkpoint(row: &SqliteRow) -> Result<StoredCheckpoint, StoreError> {
    let tree_size = to_u64(row.try_get("tree_size")?);
    let root: Vec<u8> = row.try_get("root_hash")?;
    Ok(StoredCheckpoint {
        tree_size,
        root_hash: hash_of(tree_size, &root)?,
        signed_note: row.try_get("signed_note")?,
        create_time_us: row.try_get("create_time_us")?,
    })
}

impl AuditStore for SqliteAuditStore {
    async fn append(
        &self,
        events: Vec<PendingEvent>,
        recorded_by: &str,
    ) -> Result<Vec<Appended>, StoreError> {
        // The sequencer: one appender at a time, until commit.
        let _sequencer = self.sequencer.lock().await;
        // The append reads the log's size before it writes: `BEGIN IMMEDIATE` takes the write
        // lock first. A deferred transaction whose read saw the file before another
        // connection's write (a checkpoint) cannot then write, and fails at once, without
        // waiting for the busy timeout.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let appended = sequencer::append(&mut SqliteLog(&mut tx), events, recorded_by).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn size(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        SqliteLog(&mut conn).size().await
    }

    async fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_hashes(&mut conn, indexes).await
    }

    async fn find_index(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        let index: Option<i64> =
            sqlx::query_scalar("SELECT idx FROM audit_events WHERE event_id = ?")
                .bind(event_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(index.map(to_u64))
    }

    async fn events(
        &self,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut query = super::events_query::<Sqlite>(filter, limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(stored_event).collect()
    }

    async fn insert_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, root_hash, signed_note, create_time_us) \
             VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING",
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
                sqlx::query("SELECT * FROM checkpoints WHERE tree_size = ?")
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
