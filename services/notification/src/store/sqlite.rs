//! The inboxes in SQLite, the embedded default on one machine. SQLite has one writer at a
//! time: a transaction that reads before it writes begins with `BEGIN IMMEDIATE`, so it
//! holds the write lock throughout; an authority's sequence numbers then commit in order,
//! and a claim (one statement) cannot interleave with another, without locks of our own.

use std::collections::HashSet;

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

/// A transaction that may write; `BEGIN IMMEDIATE` holds the one write lock, every
/// authority's turn with it.
async fn begin_locked(
    pool: &SqlitePool,
    _: &[&str],
) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    begin(pool).await
}

/// Which of `ids` are stored or folded already: a statement each, in process.
async fn seen(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let mut found = HashSet::new();
    for &id in ids {
        let seen: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM notifications WHERE event_id = $1 \
             UNION ALL SELECT 1 FROM folded_events WHERE event_id = $1 LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        if seen.is_some() {
            found.insert(id);
        }
    }
    Ok(found)
}

/// Folding a batch in one statement is Postgres's (a data-modifying WITH): here each event
/// goes to [`fold`] in order.
async fn fold_batch(
    _tx: &mut sqlx::Transaction<'_, Sqlite>,
    _batch: &[NewNotification],
    _fold_window_us: i64,
) -> Result<Vec<(StoredNotification, Vec<usize>)>, StoreError> {
    Ok(Vec::new())
}

/// Folds `n` into an open notification with its fold key first occurring within the
/// window, if there is one; the notification as it is after. (SQLite has no
/// data-modifying WITH: a statement per step, in process.)
async fn fold(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    n: &NewNotification,
    fold_window_us: i64,
) -> Result<Option<StoredNotification>, StoreError> {
    let Some((key, event_id)) = n.foldable(fold_window_us) else {
        return Ok(None);
    };
    let open: Option<Uuid> = sqlx::query_scalar(
        "SELECT notification_id FROM notifications WHERE authority = $1 AND fold_key = $2 \
         AND acknowledge_time_us IS NULL AND occur_time_us >= $3 \
         AND occur_time_us <= $4 ORDER BY seq DESC LIMIT 1",
    )
    .bind(&n.authority)
    .bind(key)
    .bind(n.occur_time_us.saturating_sub(fold_window_us))
    .bind(n.occur_time_us.saturating_add(fold_window_us))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(open) = open else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "UPDATE notifications SET occurrence_count = occurrence_count + 1, \
         last_occur_time_us = MAX(COALESCE(last_occur_time_us, occur_time_us), $1) \
         WHERE notification_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(n.occur_time_us)
    .bind(open)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO folded_events (event_id, notification_id) VALUES ($1, $2)")
        .bind(event_id)
        .bind(open)
        .execute(&mut **tx)
        .await?;
    Ok(Some(decode_row!(&row)?))
}

super::sql::impl_store!(SqliteNotificationStore, Sqlite, enqueue_sqlite);
super::webhook_sql::impl_webhook_store!(SqliteNotificationStore, Sqlite, enqueue_sqlite);
