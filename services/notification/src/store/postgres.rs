//! The inboxes in Postgres. Publishers of one authority take turns through a
//! transaction-scoped advisory lock, so an authority's sequence numbers commit in order.

use cpis_mesh::outbox::{NewOutboxEvent, enqueue_postgres};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{
    ACKNOWLEDGE, COLUMNS, INSERT, InboxQuery, NewNotification, NotificationStore, Published,
    StoreError, StoredNotification, decode_row, list_query,
};

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PgNotificationStore {
    pool: PgPool,
}

impl PgNotificationStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The advisory lock key of an authority's inbox: FNV-1a, stable across processes and
/// releases (unlike the standard library's hasher).
fn lock_key(authority: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"cpis.notification.inbox:"
        .iter()
        .chain(authority.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

async fn read(
    tx: &mut Transaction<'_, Postgres>,
    authority: &str,
    id: Uuid,
) -> Result<Option<StoredNotification>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE authority = $1 AND notification_id = $2"
    ))
    .bind(authority)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|row| decode_row!(&row)).transpose()?)
}

impl NotificationStore for PgNotificationStore {
    async fn publish(
        &self,
        notifications: Vec<NewNotification>,
        now_us: i64,
    ) -> Result<Published, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Locks in one order (sorted, deduplicated), so two batches never deadlock.
        let mut keys: Vec<i64> = notifications
            .iter()
            .map(|n| lock_key(&n.authority))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        let mut published = Published::default();
        for n in notifications {
            let seq: Option<i64> = sqlx::query_scalar(INSERT)
                .bind(&n.authority)
                .bind(n.notification_id)
                .bind(n.event_id)
                .bind(n.kind)
                .bind(&n.body)
                .bind(n.occur_time_us)
                .bind(now_us)
                .fetch_optional(&mut *tx)
                .await?;
            match seq {
                Some(seq) => published.stored.push(StoredNotification {
                    authority: n.authority,
                    seq,
                    notification_id: n.notification_id,
                    event_id: Some(n.event_id),
                    kind: n.kind,
                    body: n.body,
                    create_time_us: now_us,
                    acknowledgement: None,
                }),
                None => published.duplicates += 1,
            }
        }
        tx.commit().await?;
        Ok(published)
    }

    async fn list(&self, query: &InboxQuery) -> Result<Vec<StoredNotification>, StoreError> {
        let rows = list_query::<Postgres>(query)
            .build()
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| decode_row!(row))
            .collect::<Result<_, _>>()?)
    }

    async fn acknowledge(
        &self,
        authority: &str,
        ids: &[Uuid],
        acknowledged_by: &[u8],
        now_us: i64,
        audit: &[NewOutboxEvent],
    ) -> Result<Vec<StoredNotification>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut acknowledged = Vec::with_capacity(ids.len());
        for id in ids {
            sqlx::query(ACKNOWLEDGE)
                .bind(now_us)
                .bind(acknowledged_by)
                .bind(authority)
                .bind(*id)
                .execute(&mut *tx)
                .await?;
            match read(&mut tx, authority, *id).await? {
                Some(n) => acknowledged.push(n),
                // Dropping the transaction rolls every acknowledgement back.
                None => return Err(StoreError::NotFound(*id)),
            }
        }
        enqueue_postgres(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(acknowledged)
    }

    async fn last_seq(&self, authority: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM notifications WHERE authority = $1",
        )
        .bind(authority)
        .fetch_one(&self.pool)
        .await?)
    }
}
