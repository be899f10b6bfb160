//! The inboxes in SQLite, the embedded default on one machine. SQLite has one writer at a
//! time and each insert takes the next place in the statement that writes it, so an
//! authority's sequence numbers commit in order without a lock of our own.

use cpis_mesh::outbox::{NewOutboxEvent, enqueue_sqlite};
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::{
    ACKNOWLEDGE, COLUMNS, INSERT, InboxQuery, NewNotification, NotificationStore, Published,
    StoreError, StoredNotification, decode_row, list_query,
};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteNotificationStore {
    pool: SqlitePool,
}

impl SqliteNotificationStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

async fn read(
    tx: &mut Transaction<'_, Sqlite>,
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

impl NotificationStore for SqliteNotificationStore {
    async fn publish(
        &self,
        notifications: Vec<NewNotification>,
        now_us: i64,
    ) -> Result<Published, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        let rows = list_query::<Sqlite>(query)
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
        enqueue_sqlite(&mut tx, audit).await?;
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
