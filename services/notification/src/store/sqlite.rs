//! The inboxes in SQLite, the embedded default on one machine. SQLite has one writer at a
//! time: a transaction that reads before it writes begins with `BEGIN IMMEDIATE`, so it
//! holds the write lock throughout; an authority's sequence numbers then commit in order,
//! and a claim (one statement) cannot interleave with another, without locks of our own.

use cpis_mesh::outbox::{NewOutboxEvent, enqueue_sqlite};
use sqlx::Sqlite;
use sqlx::sqlite::SqlitePool;
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

/// Leases due deliveries in one write statement. Binds: worker, lease end, now, limit.
const CLAIM: &str = "UPDATE webhook_deliveries SET claimed_by = $1, claimed_until_us = $2 \
     WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries WHERE state = 1 \
       AND next_attempt_us <= $3 AND (claimed_until_us IS NULL OR claimed_until_us <= $3) \
       ORDER BY next_attempt_us LIMIT $4) \
     RETURNING {COLUMNS}";

async fn begin(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Nothing to take: `BEGIN IMMEDIATE` already holds the one write lock.
async fn lock_authorities(
    _: &mut sqlx::Transaction<'_, Sqlite>,
    _: &[&str],
) -> Result<(), sqlx::Error> {
    Ok(())
}

super::sql::impl_store!(SqliteNotificationStore, Sqlite, enqueue_sqlite);
super::webhook_sql::impl_webhook_store!(SqliteNotificationStore, Sqlite, enqueue_sqlite);
