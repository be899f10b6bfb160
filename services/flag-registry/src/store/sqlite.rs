//! The flags in SQLite (one machine). A write transaction starts `IMMEDIATE`, taking the
//! database's one write lock before it reads, so that its read-then-write cannot be
//! overtaken (SQLite has no row locks).

super::sql::flag_store!(
    SqliteFlagStore,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    sqlx::sqlite::SqliteRow,
    cpis_mesh::outbox::enqueue_sqlite,
    "BEGIN IMMEDIATE",
    ""
);

super::upload_sql::multi_row_statements!(sqlx::Sqlite, "");
super::upload_sql::upload_transaction!(sqlx::Sqlite, "");
