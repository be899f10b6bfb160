//! The outbox on Postgres. Times come from the database's clock, shared by every relay.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

use super::store::{attempts, millis};
use super::vacuum::{VACUUM_AFTER_ROWS, VACUUM_GAP, Vacuum};
use super::{
    Claim, DestinationStats, Lease, NewOutboxEvent, OutboxError, OutboxEvent, OutboxStore, Retry,
};
use crate::db::relaxed_commit_pool;

/// The outbox's INSERT of a batch of events, with its five array parameters numbered from
/// `first` (bind them with [`PostgresEvents::bind`]). A producer that writes its change in
/// one statement puts this in a data-modifying `WITH` clause of that statement.
///
/// UNNEST WITH ORDINALITY and ORDER BY: the identity follows the order of the events.
pub fn postgres_enqueue_sql(first: usize) -> String {
    let [id, destination, payload, parent, state] = std::array::from_fn(|i| first + i);
    format!(
        "INSERT INTO outbox (event_id, destination, payload, traceparent, tracestate) \
         SELECT e.event_id, e.destination, e.payload, e.traceparent, e.tracestate \
         FROM unnest(${id}::uuid[], ${destination}::text[], ${payload}::bytea[], \
         ${parent}::text[], ${state}::text[]) \
         WITH ORDINALITY AS e(event_id, destination, payload, traceparent, tracestate, n) \
         ORDER BY e.n"
    )
}

/// [`postgres_enqueue_sql`] on its own, built once.
static ENQUEUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| postgres_enqueue_sql(1));

/// The parameters of [`postgres_enqueue_sql`]: the events as five arrays.
#[derive(Debug)]
pub struct PostgresEvents<'e> {
    ids: Vec<Uuid>,
    destinations: Vec<&'e str>,
    payloads: Vec<&'e [u8]>,
    parents: Vec<Option<&'e str>>,
    states: Vec<Option<&'e str>>,
}

impl<'e> PostgresEvents<'e> {
    /// The columns of `events` (a slice, or the events of several writes in turn, borrowed
    /// where they lie).
    pub fn of(events: impl IntoIterator<Item = &'e NewOutboxEvent>) -> Self {
        let events = events.into_iter();
        let n = events.size_hint().0;
        let mut columns = Self {
            ids: Vec::with_capacity(n),
            destinations: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            parents: Vec::with_capacity(n),
            states: Vec::with_capacity(n),
        };
        for event in events {
            columns.ids.push(event.id());
            columns.destinations.push(event.destination());
            columns.payloads.push(event.payload());
            columns.parents.push(event.traceparent());
            columns.states.push(event.tracestate());
        }
        columns
    }

    /// Binds the five arrays, in the order [`postgres_enqueue_sql`] numbers them.
    pub fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'e: 'q,
    {
        query
            .bind(self.ids)
            .bind(self.destinations)
            .bind(self.payloads)
            .bind(self.parents)
            .bind(self.states)
    }
}

// SKIP LOCKED: a concurrent relay's claim passes over the rows this one is locking instead
// of waiting for them, and its re-check of the WHERE clause after our commit sees the
// lease. The lock lasts one statement; the lease outlives it.
const CLAIM: &str = "\
WITH due AS (
    SELECT seq FROM outbox
    WHERE destination = $1
      AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until <= now())
    ORDER BY seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox AS o
SET claimed_by = $3, claimed_until = now() + $4::bigint * interval '1 millisecond'
FROM due
WHERE o.seq = due.seq
RETURNING o.seq, o.event_id, o.destination, o.payload, o.traceparent, o.tracestate,
          o.created_at, o.attempts, o.claimed_until";

const CONFIRM: &str = "DELETE FROM outbox WHERE seq = ANY($1)";

const RELEASE: &str = "\
UPDATE outbox AS o
SET attempts = o.attempts + 1,
    next_attempt_at = now() + r.delay_ms * interval '1 millisecond',
    claimed_by = NULL,
    claimed_until = NULL,
    last_error = $3
FROM unnest($1::bigint[], $2::bigint[]) AS r(seq, delay_ms)
WHERE o.seq = r.seq AND o.claimed_by = $4 AND o.claimed_until = $5";

const STATS: &str = "\
SELECT count(*) AS depth,
       EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_age
FROM outbox WHERE destination = $1";

/// Writes `events` into the outbox on `conn`, inside the caller's transaction: they are
/// stored if and only if it commits.
pub async fn enqueue_postgres(
    conn: &mut PgConnection,
    events: &[NewOutboxEvent],
) -> Result<(), OutboxError> {
    if events.is_empty() {
        return Ok(());
    }
    PostgresEvents::of(events)
        .bind(sqlx::query(&ENQUEUE))
        .execute(conn)
        .await?;
    Ok(())
}

/// [`OutboxStore`] on a Postgres pool.
#[derive(Debug, Clone)]
pub struct PostgresOutbox {
    pool: PgPool,
    /// Claims, confirmations and releases: without waiting for the WAL flush (see
    /// [`relaxed_commit_pool`]); each is safe to lose in a crash.
    relay: PgPool,
    /// Vacuums the table after many confirmations (see [`super::vacuum`]).
    vacuum: Arc<Vacuum>,
}

/// How many connections the relay's relaxed pool opens at most (a loop per destination,
/// and the metrics' reads).
const RELAY_CONNECTIONS: u32 = 4;

impl PostgresOutbox {
    /// The outbox in the database of `pool` (within a Tokio runtime).
    pub fn new(pool: PgPool) -> Self {
        Self::with_vacuum(pool, VACUUM_AFTER_ROWS, VACUUM_GAP)
    }

    /// As [`new`](Self::new), vacuuming the table from `after_rows` dead rows, looked at at
    /// most once per `gap` (tests use small numbers).
    pub fn with_vacuum(pool: PgPool, after_rows: u64, gap: Duration) -> Self {
        let relay = relaxed_commit_pool(&pool, RELAY_CONNECTIONS);
        Self {
            vacuum: Arc::new(Vacuum::new(relay.clone(), after_rows, gap)),
            relay,
            pool,
        }
    }
}

fn event(row: &PgRow) -> Result<OutboxEvent, sqlx::Error> {
    Ok(OutboxEvent {
        seq: row.try_get("seq")?,
        id: row.try_get("event_id")?,
        destination: row.try_get("destination")?,
        payload: row.try_get("payload")?,
        traceparent: row.try_get("traceparent")?,
        tracestate: row.try_get("tracestate")?,
        created_at: row.try_get("created_at")?,
        attempts: attempts(i64::from(row.try_get::<i32, _>("attempts")?)),
    })
}

impl OutboxStore for PostgresOutbox {
    fn enqueue<'a>(
        &'a self,
        events: &'a [NewOutboxEvent],
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            enqueue_postgres(&mut tx, events).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn claim<'a>(
        &'a self,
        destination: &'a str,
        limit: usize,
        relay_id: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, OutboxError>> {
        Box::pin(async move {
            let rows = sqlx::query(CLAIM)
                .bind(destination)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(relay_id)
                .bind(millis(lease)?)
                .fetch_all(&self.relay)
                .await?;
            // One statement, one now(): every row got the same expiry.
            let claimed_until = match rows.first() {
                Some(row) => row.try_get::<OffsetDateTime, _>("claimed_until")?,
                None => OffsetDateTime::now_utc(),
            };
            let mut events = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
            // RETURNING promises no order.
            events.sort_by_key(|e| e.seq);
            Ok(Claim {
                lease: Lease {
                    claimed_by: relay_id.to_owned(),
                    claimed_until,
                },
                events,
            })
        })
    }

    fn confirm<'a>(&'a self, seqs: &'a [i64]) -> BoxFuture<'a, Result<u64, OutboxError>> {
        Box::pin(async move {
            if seqs.is_empty() {
                return Ok(0);
            }
            // Planned with the batch's numbers each time: a plan kept for the connection
            // may be made while the outbox is nearly empty (a sequential scan) and would
            // then scan a backlog of any size for every confirmation.
            let done = sqlx::query(CONFIRM)
                .persistent(false)
                .bind(seqs)
                .execute(&self.relay)
                .await?;
            if done.rows_affected() > 0 {
                self.vacuum.deleted().await;
            }
            Ok(done.rows_affected())
        })
    }

    fn release<'a>(
        &'a self,
        lease: &'a Lease,
        retries: &'a [Retry],
        error: &'a str,
    ) -> BoxFuture<'a, Result<u64, OutboxError>> {
        Box::pin(async move {
            if retries.is_empty() {
                return Ok(0);
            }
            let seqs: Vec<i64> = retries.iter().map(|r| r.seq).collect();
            let delays = retries
                .iter()
                .map(|r| millis(r.delay))
                .collect::<Result<Vec<_>, _>>()?;
            let done = sqlx::query(RELEASE)
                .bind(seqs)
                .bind(delays)
                .bind(error)
                .bind(&lease.claimed_by)
                .bind(lease.claimed_until)
                .execute(&self.relay)
                .await?;
            Ok(done.rows_affected())
        })
    }

    fn stats<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<DestinationStats, OutboxError>> {
        Box::pin(async move {
            let row = sqlx::query(STATS)
                .bind(destination)
                .fetch_one(&self.pool)
                .await?;
            let depth: i64 = row.try_get("depth")?;
            let age: Option<f64> = row.try_get("oldest_age")?;
            Ok(DestinationStats {
                depth: u64::try_from(depth).unwrap_or_default(),
                // A clock step can make the age negative for a moment: show zero then.
                oldest_age: Duration::try_from_secs_f64(age.unwrap_or_default().max(0.0))
                    .unwrap_or_default(),
            })
        })
    }
}
