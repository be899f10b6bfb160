//! The outbox on SQLite (one machine). Times are milliseconds of the process's clock; SQLite
//! has one writer at a time, so a single UPDATE ... RETURNING claims atomically.

use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use time::OffsetDateTime;

use super::store::{attempts, millis};
use super::{
    Claim, DestinationStats, Lease, NewOutboxEvent, OutboxError, OutboxEvent, OutboxStore, Retry,
};

const ENQUEUE: &str = "\
INSERT INTO outbox (event_id, destination, payload, traceparent, tracestate, created_at,
                    next_attempt_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";

// The subquery and the update run as one write: no other claim can slip in between.
const CLAIM: &str = "\
UPDATE outbox SET claimed_by = ?1, claimed_until = ?2
WHERE seq IN (
    SELECT seq FROM outbox
    WHERE destination = ?3
      AND next_attempt_at <= ?4
      AND (claimed_until IS NULL OR claimed_until <= ?4)
    ORDER BY seq
    LIMIT ?5
)
RETURNING seq, event_id, destination, payload, traceparent, tracestate, created_at, attempts";

// The row ids travel as one JSON array: one statement whatever the batch size.
const CONFIRM: &str = "DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?1))";

const RELEASE: &str = "\
UPDATE outbox
SET attempts = attempts + 1,
    next_attempt_at = ?1 + r.delay_ms,
    claimed_by = NULL,
    claimed_until = NULL,
    last_error = ?2
FROM (SELECT json_extract(value, '$[0]') AS seq, json_extract(value, '$[1]') AS delay_ms
      FROM json_each(?3)) AS r
WHERE outbox.seq = r.seq AND outbox.claimed_by = ?4 AND outbox.claimed_until = ?5";

const STATS: &str = "\
SELECT count(*) AS depth, min(created_at) AS oldest FROM outbox WHERE destination = ?1";

fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

fn to_ms(time: OffsetDateTime) -> i64 {
    // Milliseconds since 1970 fit an i64 for 292 million years.
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, OutboxError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| OutboxError::Time(e.to_string()))
}

/// Writes `events` into the outbox on `conn`, inside the caller's transaction: they are
/// stored if and only if it commits.
///
/// SQLite upgrades a transaction that read first to a writer only if nobody wrote
/// meanwhile; a producer that reads before writing should begin with `BEGIN IMMEDIATE`.
pub async fn enqueue_sqlite(
    conn: &mut SqliteConnection,
    events: &[NewOutboxEvent],
) -> Result<(), OutboxError> {
    let now = now_ms();
    if let [event] = events {
        sqlx::query(ENQUEUE)
            .bind(event.id())
            .bind(event.destination())
            .bind(event.payload())
            .bind(event.traceparent())
            .bind(event.tracestate())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    // A batch (an upload's chunk) as multi-row INSERTs: each statement is a round trip to
    // SQLite's worker thread, which dominated a bulk upload row by row.
    for chunk in events.chunks(ENQUEUE_ROWS) {
        let sql = enqueue_many(chunk.len());
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(event.id())
                .bind(event.destination())
                .bind(event.payload())
                .bind(event.traceparent())
                .bind(event.tracestate())
                .bind(now)
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT: 7 parameters each, far below SQLite's limit (32,766).
const ENQUEUE_ROWS: usize = 200;

/// `INSERT ... VALUES (?, ...), ...` for `rows` rows. Positional `?` only: the driver binds
/// numbered parameters by name, in time quadratic in their number.
fn enqueue_many(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO outbox (event_id, destination, payload, traceparent, tracestate, \
         created_at, next_attempt_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

/// [`OutboxStore`] on an SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
}

impl SqliteOutbox {
    /// The outbox in the database of `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn event(row: &SqliteRow) -> Result<OutboxEvent, OutboxError> {
    Ok(OutboxEvent {
        seq: row.try_get("seq")?,
        id: row.try_get("event_id")?,
        destination: row.try_get("destination")?,
        payload: row.try_get("payload")?,
        traceparent: row.try_get("traceparent")?,
        tracestate: row.try_get("tracestate")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        attempts: attempts(row.try_get("attempts")?),
    })
}

impl OutboxStore for SqliteOutbox {
    fn enqueue<'a>(
        &'a self,
        events: &'a [NewOutboxEvent],
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            enqueue_sqlite(&mut tx, events).await?;
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
            let now = now_ms();
            let claimed_until = now.saturating_add(millis(lease)?);
            let rows = sqlx::query(CLAIM)
                .bind(relay_id)
                .bind(claimed_until)
                .bind(destination)
                .bind(now)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            let mut events = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
            // RETURNING promises no order.
            events.sort_by_key(|e| e.seq);
            Ok(Claim {
                lease: Lease {
                    claimed_by: relay_id.to_owned(),
                    claimed_until: from_ms(claimed_until)?,
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
            let ids = serde_json::Value::from(seqs).to_string();
            let done = sqlx::query(CONFIRM).bind(ids).execute(&self.pool).await?;
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
            let pairs = retries
                .iter()
                .map(|r| Ok(serde_json::json!([r.seq, millis(r.delay)?])))
                .collect::<Result<Vec<_>, OutboxError>>()?;
            let done = sqlx::query(RELEASE)
                .bind(now_ms())
                .bind(error)
                .bind(serde_json::Value::Array(pairs).to_string())
                .bind(&lease.claimed_by)
                .bind(to_ms(lease.claimed_until))
                .execute(&self.pool)
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
            let oldest: Option<i64> = row.try_get("oldest")?;
            let age_ms = oldest.map_or(0, |t| now_ms().saturating_sub(t).max(0));
            Ok(DestinationStats {
                depth: u64::try_from(depth).unwrap_or_default(),
                oldest_age: Duration::from_millis(u64::try_from(age_ms).unwrap_or_default()),
            })
        })
    }
}
