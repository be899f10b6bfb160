//! Both dialects behind one URL: connect, migrate (twice, as a second replica would), health.

use cpis_mesh::db::{Database, DatabaseSettings, EmbeddedMigration, Migrations};
use cpis_mesh::testkit::{postgres_database, sqlite_database};

const MIGRATIONS: Migrations = Migrations {
    postgres: &[EmbeddedMigration {
        version: 1,
        description: "a table",
        sql: "CREATE TABLE things (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL)",
    }],
    sqlite: &[EmbeddedMigration {
        version: 1,
        description: "a table",
        sql: "CREATE TABLE things (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)",
    }],
};

async fn exercise(url: &str) {
    let db = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    db.migrate(&MIGRATIONS).await.unwrap();
    // A second start applies nothing and does not fail.
    let again = Database::connect(&DatabaseSettings::new(url))
        .await
        .unwrap();
    again.migrate(&MIGRATIONS).await.unwrap();
    db.ping().await.unwrap();
    let check = db.health_check();
    assert_eq!(check.name(), "database");
    check.check().await.unwrap();
    let inserted = match &db {
        Database::Postgres(pool) => sqlx::query("INSERT INTO things (name) VALUES ('x')")
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
        Database::Sqlite(pool) => sqlx::query("INSERT INTO things (name) VALUES ('x')")
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(inserted, 1);
    db.close().await;
    // A closed pool fails its health check.
    assert!(db.health_check().check().await.is_err());
}

#[tokio::test]
async fn postgres_connects_migrates_and_answers() {
    exercise(&postgres_database().await).await;
}

#[tokio::test]
async fn sqlite_creates_its_file_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_database(&dir.path().join("nested"), "things");
    exercise(&url).await;
    assert!(dir.path().join("nested/things.db").exists());
}

#[tokio::test]
async fn an_unknown_scheme_is_refused() {
    let err = Database::connect(&DatabaseSettings::new("mysql://x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
}

#[tokio::test]
async fn the_relaxed_pool_skips_the_flush_wait_and_plans_by_index_unlike_the_main_pool() {
    let url = postgres_database().await;
    let Database::Postgres(pool) = Database::connect(&DatabaseSettings::new(&url))
        .await
        .unwrap()
    else {
        unreachable!("a postgres URL")
    };
    let relaxed = cpis_mesh::db::relaxed_commit_pool(&pool, 2);
    let setting = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(setting(relaxed.clone()).await, "off");
    assert_ne!(setting(pool.clone()).await, "off");
    // Planned by index, as the index-scan pool; the main pool as the server says.
    let show = |pool: sqlx::PgPool, name: &'static str| async move {
        sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let checks = cpis_mesh::db::index_scan_pool(&pool);
    for name in ["enable_seqscan", "enable_bitmapscan"] {
        assert_eq!(show(relaxed.clone(), name).await, "off", "{name}");
        assert_eq!(show(checks.clone(), name).await, "off", "{name}");
        assert_eq!(show(pool.clone(), name).await, "on", "{name}");
    }
    // The same database: what one writes, the other reads.
    sqlx::query("CREATE TABLE seen (n INT)")
        .execute(&relaxed)
        .await
        .unwrap();
    sqlx::query("INSERT INTO seen VALUES (1)")
        .execute(&relaxed)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM seen")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}
