//! Connections a busy path keeps between uses (`cpis_mesh::db::Warm`), on a real Postgres:
//! kept only when clean, never more in use than allowed, waiting in turn.

use std::time::Duration;

use cpis_mesh::db::{Database, DatabaseSettings, Warm};
use cpis_mesh::testkit::postgres_database;
use sqlx::postgres::PgPool;

async fn pool(max_connections: u32, acquire_timeout: Duration) -> PgPool {
    let url = postgres_database().await;
    let mut settings = DatabaseSettings::new(&url);
    settings.max_connections = max_connections;
    settings.acquire_timeout = acquire_timeout;
    match Database::connect(&settings).await.unwrap() {
        Database::Postgres(pool) => pool,
        Database::Sqlite(_) => unreachable!("a postgres URL"),
    }
}

async fn backend(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_clean_connection_is_kept_and_used_again_outside_the_pool() {
    let pool = pool(4, Duration::from_secs(5)).await;
    let warm = Warm::new(pool.clone(), 2, Duration::from_secs(60));
    let mut conn = warm.acquire().await.unwrap();
    let first = backend(&mut conn).await;
    conn.done();
    assert_eq!(warm.kept(), 1);
    // Kept, not returned: the pool has no idle connection to give.
    assert_eq!(pool.num_idle(), 0);
    for _ in 0..5 {
        let mut conn = warm.acquire().await.unwrap();
        assert_eq!(backend(&mut conn).await, first);
        assert_eq!(warm.kept(), 0, "in use, not kept");
        conn.done();
    }
    assert_eq!(pool.size(), 1, "one connection served every use");
}

#[tokio::test]
async fn a_connection_cancelled_mid_statement_goes_back_through_the_pool_and_works() {
    let pool = pool(4, Duration::from_secs(5)).await;
    let warm = Warm::new(pool.clone(), 2, Duration::from_secs(60));
    let cancelled = async {
        let mut conn = warm.acquire().await.unwrap();
        sqlx::query("SELECT pg_sleep(2)")
            .execute(&mut *conn)
            .await
            .unwrap();
        conn.done();
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(100), cancelled)
            .await
            .is_err(),
        "the statement outlives the timeout"
    );
    assert_eq!(warm.kept(), 0, "a connection mid-statement is not kept");
    // Whichever connection answers next answers its own statement, not the sleep's.
    for n in 0..3_i32 {
        let mut conn = warm.acquire().await.unwrap();
        let got: i32 = sqlx::query_scalar("SELECT $1::int4")
            .bind(n)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(got, n);
        conn.done();
    }
}

#[tokio::test]
async fn a_connection_whose_statement_failed_is_not_kept() {
    let pool = pool(4, Duration::from_secs(5)).await;
    let warm = Warm::new(pool.clone(), 2, Duration::from_secs(60));
    let mut conn = warm.acquire().await.unwrap();
    let err = sqlx::query("SELECT * FROM no_such_table")
        .execute(&mut *conn)
        .await;
    assert!(err.is_err());
    drop(conn);
    assert_eq!(warm.kept(), 0);
    let mut conn = warm.acquire().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn no_more_than_keep_are_in_use_and_waiters_are_served_in_turn() {
    let pool = pool(4, Duration::from_millis(300)).await;
    let warm = std::sync::Arc::new(Warm::new(pool.clone(), 2, Duration::from_secs(60)));
    let a = warm.acquire().await.unwrap();
    let b = warm.acquire().await.unwrap();
    // A third waits for a permit, and gives up after the pool's acquire timeout although
    // the pool itself has connections to spare.
    let started = std::time::Instant::now();
    let err = warm.acquire().await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The pool's other users are not starved meanwhile.
    let other = pool.acquire().await.unwrap();
    drop(other);
    // A waiter gets the connection the first one finishes with, before a later arrival.
    let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
    let waiter = |n: u32| {
        let (warm, tx) = (warm.clone(), tx.clone());
        tokio::spawn(async move {
            let conn = warm.acquire().await.unwrap();
            tx.send(n).unwrap();
            conn.done();
        })
    };
    let first = waiter(1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = waiter(2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.done();
    let next = tokio::time::timeout(Duration::from_secs(5), order.recv()).await;
    assert_eq!(next.unwrap(), Some(1), "the earlier waiter first");
    b.done();
    let next = tokio::time::timeout(Duration::from_secs(5), order.recv()).await;
    assert_eq!(next.unwrap(), Some(2));
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(warm.kept(), 2);
}

#[tokio::test]
async fn a_connection_unused_for_too_long_is_handed_back_to_the_pool() {
    let pool = pool(4, Duration::from_secs(5)).await;
    let warm = Warm::new(pool.clone(), 2, Duration::from_millis(50));
    let conn = warm.acquire().await.unwrap();
    conn.done();
    assert_eq!(warm.kept(), 1);
    tokio::time::sleep(Duration::from_millis(80)).await;
    // The stale one goes back to the pool (through its ping); the use gets a connection
    // from the pool: the returned one or a new one.
    let mut conn = warm.acquire().await.unwrap();
    assert_eq!(warm.kept(), 0);
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    drop(conn);
    // Both are the pool's again.
    tokio::time::timeout(Duration::from_secs(5), async {
        while pool.num_idle() != pool.size() as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every connection back in the pool");
}
