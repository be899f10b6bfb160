//! The inboxes in Postgres. Publishers (and escalations) of one authority take turns
//! through a transaction-scoped advisory lock, so an authority's sequence numbers commit in
//! order; workers lease deliveries with `FOR UPDATE SKIP LOCKED`.

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

/// Takes the authorities' turns, in one order (sorted, deduplicated) so that two
/// transactions never deadlock.
async fn lock_authorities(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    authorities: &[&str],
) -> Result<(), sqlx::Error> {
    let mut keys: Vec<i64> = authorities.iter().map(|a| lock_key(a)).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

super::sql::impl_store!(PgNotificationStore, Postgres, enqueue_postgres);
super::webhook_sql::impl_webhook_store!(PgNotificationStore, Postgres, enqueue_postgres);
