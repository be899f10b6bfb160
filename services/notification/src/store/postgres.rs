//! The inboxes in Postgres. Publishers (and escalations) of one authority take turns
//! through a transaction-scoped advisory lock, so an authority's sequence numbers commit in
//! order; workers lease deliveries with `FOR UPDATE SKIP LOCKED`.

use std::collections::HashSet;
use std::sync::LazyLock;

use cpis_mesh::outbox::{NewOutboxEvent, enqueue_postgres};
use sqlx::Postgres;
use sqlx::postgres::PgPool;
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

/// Leases due deliveries: a concurrent claim skips the rows this one locks, then sees the
/// lease. Binds: worker, lease end, now, limit.
const CLAIM: &str = "UPDATE webhook_deliveries SET claimed_by = $1, claimed_until_us = $2 \
     WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries WHERE state = 1 \
       AND next_attempt_us <= $3 AND (claimed_until_us IS NULL OR claimed_until_us <= $3) \
       ORDER BY next_attempt_us LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING {COLUMNS}";

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

async fn begin(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

/// Begins a transaction holding the authorities' turns, in one round trip: the keys are
/// numbers of ours, written into the statement, and taken in one order (sorted,
/// deduplicated) so that two transactions never deadlock.
async fn begin_locked(
    pool: &PgPool,
    authorities: &[&str],
) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    let mut sql = String::from("BEGIN");
    for key in lock_keys(authorities) {
        sql.push_str(&format!("; SELECT pg_advisory_xact_lock({key})"));
    }
    pool.begin_with(sql).await
}

/// The authorities' lock keys in the one order every transaction takes them.
fn lock_keys(authorities: &[&str]) -> Vec<i64> {
    let mut keys: Vec<i64> = authorities.iter().map(|a| lock_key(a)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Which of `ids` are stored or folded already, in one statement for the batch.
async fn seen(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM notifications WHERE event_id = ANY($1) \
         UNION ALL SELECT event_id FROM folded_events WHERE event_id = ANY($1)",
    )
    // Planned with the batch's ids each time: a plan kept for the connection may be made
    // while the inbox is nearly empty (a sequential scan) and would scan it whole later.
    .persistent(false)
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(found.into_iter().collect())
}

/// Folds, in one statement, each of a batch's foldable events that has an open notification
/// to fold into as the inbox is before the statement (the newest of its authority with its
/// fold key first occurring within the window), except those after an event of the same
/// authority and fold key that has none: that one will be stored and may take them, so
/// they are left to [`fold`], one by one in order. The rest cannot be affected by what the
/// batch stores (only a stored notification could change their choice), so folding them
/// first ends as folding them in order would. Returns each notification folded into, as it
/// is after, with the positions in `batch` of the events it took. Binds: positions,
/// authorities, fold keys, occur times, window starts, window ends, event ids.
static FOLD_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ev AS ( \
            SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
                $6::int8[], $7::uuid[]) AS e(n, authority, fold_key, occur_us, lo, hi, event_id) \
         ), target AS ( \
            SELECT e.n, e.authority, e.fold_key, e.occur_us, e.event_id, t.open_id \
            FROM ev e LEFT JOIN LATERAL ( \
                SELECT notification_id AS open_id FROM notifications \
                WHERE authority = e.authority AND fold_key = e.fold_key \
                  AND acknowledge_time_us IS NULL \
                  AND occur_time_us >= e.lo AND occur_time_us <= e.hi \
                ORDER BY seq DESC LIMIT 1 \
            ) t ON true \
         ), now_folded AS ( \
            SELECT t.* FROM target t WHERE t.open_id IS NOT NULL AND NOT EXISTS ( \
                SELECT 1 FROM target b WHERE b.open_id IS NULL AND b.authority = t.authority \
                  AND b.fold_key = t.fold_key AND b.n < t.n) \
         ), per_open AS ( \
            SELECT open_id, count(*)::int4 AS events, max(occur_us) AS last_us, \
                array_agg(n ORDER BY n) AS positions \
            FROM now_folded GROUP BY open_id \
         ), folded AS ( \
            UPDATE notifications SET occurrence_count = occurrence_count + per_open.events, \
                last_occur_time_us = GREATEST(COALESCE(last_occur_time_us, occur_time_us), \
                    per_open.last_us) \
            FROM per_open WHERE notification_id = per_open.open_id \
            RETURNING {COLUMNS} \
         ), recorded AS ( \
            INSERT INTO folded_events (event_id, notification_id) \
            SELECT event_id, open_id FROM now_folded \
         ) \
         SELECT {COLUMNS}, per_open.positions FROM folded \
         JOIN per_open ON per_open.open_id = folded.notification_id"
    )
});

/// Folds `n` into an open notification with its fold key first occurring within the
/// window, if there is one; the notification as it is after ([`FOLD_BATCH`] for one event).
async fn fold(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    n: &NewNotification,
    fold_window_us: i64,
) -> Result<Option<StoredNotification>, StoreError> {
    let folded = fold_batch(tx, std::slice::from_ref(n), fold_window_us).await?;
    Ok(folded
        .into_iter()
        .next()
        .map(|(notification, _)| notification))
}

/// [`FOLD_BATCH`] for the foldable events of `batch`.
async fn fold_batch(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    batch: &[NewNotification],
    fold_window_us: i64,
) -> Result<Vec<(StoredNotification, Vec<usize>)>, StoreError> {
    let mut positions = Vec::new();
    let mut authorities = Vec::new();
    let mut keys = Vec::new();
    let mut occurs = Vec::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut ids = Vec::new();
    for (position, n) in batch.iter().enumerate() {
        if let Some((key, event_id)) = n.foldable(fold_window_us) {
            positions.push(i64::try_from(position).unwrap_or(i64::MAX));
            authorities.push(n.authority.as_str());
            keys.push(key);
            occurs.push(n.occur_time_us);
            starts.push(n.occur_time_us.saturating_sub(fold_window_us));
            ends.push(n.occur_time_us.saturating_add(fold_window_us));
            ids.push(event_id);
        }
    }
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&FOLD_BATCH)
        .bind(&positions)
        .bind(&authorities)
        .bind(&keys)
        .bind(&occurs)
        .bind(&starts)
        .bind(&ends)
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| {
            use sqlx::Row;
            let taken: Vec<i64> = row.try_get(12)?;
            let taken = taken
                .into_iter()
                .filter_map(|p| usize::try_from(p).ok())
                .collect();
            Ok((decode_row!(row)?, taken))
        })
        .collect()
}

super::sql::impl_store!(PgNotificationStore, Postgres, enqueue_postgres);
super::webhook_sql::impl_webhook_store!(PgNotificationStore, Postgres, enqueue_postgres);
