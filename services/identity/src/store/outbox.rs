//! Audit events into the mesh's transactional outbox (`cpis_mesh::outbox`), inside the
//! caller's transaction, as prost-encoded `cpis.audit.v1.AuditEvent`s for the audit sink.

use cpis_mesh::outbox::{self, NewOutboxEvent};
use cpis_proto::audit::AuditEvent;
use sqlx::{PgConnection, SqliteConnection};

use super::StoreError;

/// The outbox table for Postgres (migration 2 of identity's own).
pub(crate) const POSTGRES_SQL: &str = outbox::POSTGRES_SQL;
/// Room for the relay's claims in place (migration 3).
pub(crate) const POSTGRES_HOT_SQL: &str = outbox::POSTGRES_HOT_SQL;
/// Event ids no longer unique in the outbox (migration 4).
pub(crate) const POSTGRES_EVENT_ID_NOT_UNIQUE_SQL: &str = outbox::POSTGRES_EVENT_ID_NOT_UNIQUE_SQL;
/// The outbox table for SQLite.
pub(crate) const SQLITE_SQL: &str = outbox::SQLITE_SQL;
/// `event_id` not unique on SQLite either (migration 3).
pub(crate) const SQLITE_EVENT_ID_NOT_UNIQUE_SQL: &str = outbox::SQLITE_EVENT_ID_NOT_UNIQUE_SQL;

fn rows(events: &[AuditEvent]) -> Result<Vec<NewOutboxEvent>, StoreError> {
    events
        .iter()
        .map(|event| {
            NewOutboxEvent::audit(event.clone()).map_err(|e| StoreError::Outbox(e.to_string()))
        })
        .collect()
}

/// Writes `events` to the outbox in the transaction `conn` belongs to.
pub(crate) async fn enqueue_postgres(
    conn: &mut PgConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    outbox::enqueue_postgres(conn, &rows(events)?)
        .await
        .map_err(|e| StoreError::Outbox(e.to_string()))
}

/// Writes `events` to the outbox in the transaction `conn` belongs to.
pub(crate) async fn enqueue_sqlite(
    conn: &mut SqliteConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    outbox::enqueue_sqlite(conn, &rows(events)?)
        .await
        .map_err(|e| StoreError::Outbox(e.to_string()))
}
