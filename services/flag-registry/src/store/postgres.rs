//! The flags in Postgres (a cluster). A write reads its row `FOR UPDATE`, so concurrent
//! writers of one flag queue rather than fail.

super::sql::flag_store!(
    PgFlagStore,
    sqlx::Postgres,
    sqlx::PgPool,
    sqlx::postgres::PgRow,
    cpis_mesh::outbox::enqueue_postgres,
    "BEGIN",
    " FOR UPDATE"
);

super::upload_sql::upload_transaction!(sqlx::Postgres, " FOR UPDATE", true);
