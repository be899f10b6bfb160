//! The flags in Postgres (a cluster). A write reads its row `FOR UPDATE`, so concurrent
//! writers of one flag queue rather than fail.
//!
//! An upload's chunk binds each column as one array and reads it back with `unnest`: three
//! statements of a few parameters each, whatever the chunk's size, instead of up to 17,000
//! scalar parameters for sqlx and Postgres to bind and parse one by one.

use cpis_mesh::outbox::{NewOutboxEvent, PostgresEvents, postgres_enqueue_sql};
use sqlx::Row as _;
use sqlx::postgres::PgConnection;

use super::upload_sql::{ON_CONFLICT, changed_concurrently};
use super::{FlagRow, StoreError};

super::sql::flag_store!(
    PgFlagStore,
    sqlx::Postgres,
    sqlx::PgPool,
    sqlx::postgres::PgRow,
    cpis_mesh::outbox::enqueue_postgres,
    "BEGIN",
    " FOR UPDATE"
);

super::upload_sql::upload_transaction!(sqlx::Postgres, " FOR UPDATE");

/// Claims `case_references` (each once); answers those no earlier chunk claimed.
async fn claim_rows(
    conn: &mut PgConnection,
    case_references: &[&str],
) -> Result<Vec<String>, StoreError> {
    // Not kept prepared: the table is created again by every upload.
    Ok(sqlx::query_scalar(
        "INSERT INTO upload_present (case_reference) SELECT unnest($1::text[]) \
         ON CONFLICT DO NOTHING RETURNING case_reference",
    )
    .persistent(false)
    .bind(case_references)
    .fetch_all(conn)
    .await?)
}

/// The stored flags of `authority` among `case_references`, locked.
async fn lock_existing(
    conn: &mut PgConnection,
    authority: &str,
    case_references: &[&str],
) -> Result<Vec<FlagRow>, StoreError> {
    if case_references.is_empty() {
        return Ok(Vec::new());
    }
    // A lookup of the unique key per case reference, whatever the planner knows: its
    // statistics do not count the rows the upload has added, and with `= ANY($2)` it read
    // every flag of the authority for each chunk. The LIMIT (at most one row by the key)
    // keeps the subquery from being flattened into a join it might plan the same way.
    let sql = format!(
        "SELECT f.* FROM unnest($2::text[]) AS r(case_reference) CROSS JOIN LATERAL \
         (SELECT {} FROM flags WHERE authority_code = $1 \
         AND case_reference = r.case_reference LIMIT 1) AS f FOR UPDATE OF f",
        super::sql::COLUMNS
    );
    let rows = sqlx::query(&sql)
        .bind(authority)
        .bind(case_references)
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
}

/// Creates or replaces `rows` and enqueues `events`, in one statement (the events' INSERT
/// in a data-modifying `WITH`).
async fn write_rows(
    conn: &mut PgConnection,
    rows: &[FlagRow],
    events: Vec<NewOutboxEvent>,
) -> Result<(), StoreError> {
    if rows.is_empty() && events.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "WITH written AS (INSERT INTO flags ({columns}) SELECT * FROM unnest($1::text[], \
         $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
         $15::bigint[], $16::bigint[], $17::text[]) {ON_CONFLICT} RETURNING 1), \
         events AS ({events}) SELECT count(*) FROM written",
        columns = super::sql::COLUMNS,
        events = postgres_enqueue_sql(18),
    );
    let column = |f: fn(&FlagRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let optional = |f: fn(&FlagRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    let query = sqlx::query(&sql)
        .bind(column(|r| &r.flag_id))
        .bind(column(|r| &r.authority_code))
        .bind(column(|r| &r.authority_name))
        .bind(column(|r| &r.case_reference))
        .bind(column(|r| &r.nhs_number))
        .bind(column(|r| &r.kind))
        .bind(optional(|r| r.legal_basis.as_deref()))
        .bind(optional(|r| r.expected_delivery.as_deref()))
        .bind(column(|r| &r.start_date))
        .bind(optional(|r| r.end_date.as_deref()))
        .bind(optional(|r| r.delete_date.as_deref()))
        .bind(optional(|r| r.office_hours_phone.as_deref()))
        .bind(column(|r| &r.emergency_duty_phone))
        .bind(optional(|r| r.secure_email.as_deref()))
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at_us).collect::<Vec<_>>())
        .bind(column(|r| &r.updated_by));
    let written: i64 = PostgresEvents::of(&events)
        .bind(query)
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    if usize::try_from(written).ok() == Some(rows.len()) {
        Ok(())
    } else {
        Err(changed_concurrently())
    }
}
