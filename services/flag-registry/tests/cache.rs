//! The `GetFlags` cache: read-your-write through real Redis (negative entries included), a
//! Redis outage in the middle of a test, and the in-process fallback's bound and race rule.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cpis_flag_registry::cache::FlagCache;
use cpis_mesh::db::Database;
use cpis_proto::common::{self, NhsNumber, OdsCode};
use cpis_proto::flags::{EndFlagRequest, GetFlagsRequest, end_flag_request};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn redis_url() -> String {
    std::env::var("CPIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
fn prefix() -> String {
    format!("cpis:test:{}:", uuid::Uuid::new_v4().simple())
}

fn redis_cache(url: &str, prefix: &str) -> FlagCache {
    FlagCache::redis(url, prefix, Duration::from_secs(60)).unwrap()
}

async fn redis_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap()
}

async fn flags_of(h: &Harness, number: &str) -> Vec<common::Flag> {
    h.client("attendance")
        .get_flags(GetFlagsRequest {
            nhs_number: Some(NhsNumber {
                value: number.into(),
            }),
            include_history: false,
        })
        .await
        .unwrap()
        .into_inner()
        .flags
}

/// Deletes every flag behind the service's back, so that only the cache still knows them.
async fn delete_rows(db: &Database) {
    match db {
        Database::Postgres(pool) => {
            sqlx::query("DELETE FROM flags")
                .execute(pool)
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query("DELETE FROM flags")
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

fn end(case: &str) -> EndFlagRequest {
    EndFlagRequest {
        authority: Some(OdsCode {
            value: CAMDEN.into(),
        }),
        target: Some(end_flag_request::Target::CaseReference(case.into())),
        end_date: Some(wire(2026, 6, 1)),
        delete_date: None,
        expected_version: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_see_every_write_through_redis_including_a_negative_entry() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let h = start_with(
        &cpis_mesh::testkit::sqlite_database(dir.path(), "flags"),
        Options {
            cache: Some(redis_cache(&redis_url(), &prefix)),
            ..Options::default()
        },
    )
    .await;
    let child = nhs(12);
    // No flag: the empty answer is cached (a negative entry), under a pseudonym.
    assert!(flags_of(&h, &child).await.is_empty());
    let keys = redis_keys(&prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!keys[0].contains(&child), "the key holds no NHS number");

    // A new flag replaces the negative entry at once.
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &child)))
        .await
        .unwrap();
    let shown = flags_of(&h, &child).await;
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].end_date, None);

    // Served from the cache now: the rows can go and the answer stays.
    delete_rows(&h.db).await;
    assert_eq!(flags_of(&h, &child).await.len(), 1);
    client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &child)))
        .await
        .unwrap();

    // Ending it: the next read shows it ended.
    client.end_flag(authed(&token, end("C-1"))).await.unwrap();
    let shown = flags_of(&h, &child).await;
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].end_date, Some(wire(2026, 6, 1)));
}

/// A TCP relay to Redis that the test can stop.
struct RedisProxy {
    url: String,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl RedisProxy {
    async fn start() -> Self {
        let target = redis_url()
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().unwrap().push(relay);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { url, tasks }
    }

    /// Closes the listener and every relayed connection: Redis is gone.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_mid_test_degrades_to_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = RedisProxy::start().await;
    let prefix = prefix();
    let h = start_with(
        &cpis_mesh::testkit::sqlite_database(dir.path(), "flags"),
        Options {
            cache: Some(redis_cache(&proxy.url, &prefix)),
            ..Options::default()
        },
    )
    .await;
    let child = nhs(13);
    let token = h.manager(CAMDEN);
    let mut client = h.client(&format!("org:{CAMDEN}"));
    client
        .upsert_flag(authed(&token, cpp(CAMDEN, "C-1", &child)))
        .await
        .unwrap();
    assert_eq!(flags_of(&h, &child).await.len(), 1);
    assert!(
        !redis_keys(&prefix).await.is_empty(),
        "cached through the proxy"
    );

    proxy.stop();
    // Reads still answer, from the database, and still see every write.
    assert_eq!(flags_of(&h, &child).await.len(), 1);
    client.end_flag(authed(&token, end("C-1"))).await.unwrap();
    let shown = flags_of(&h, &child).await;
    assert_eq!(shown[0].end_date, Some(wire(2026, 6, 1)));
    assert!(flags_of(&h, &nhs(14)).await.is_empty());
}

fn flag(id: &str) -> common::Flag {
    common::Flag {
        flag_id: id.to_owned(),
        ..common::Flag::default()
    }
}

/// Loads through `cache`, counting loads.
async fn load(cache: &FlagCache, key: &str, loads: &AtomicUsize) -> Vec<common::Flag> {
    cache
        .get_or_load(key, || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(vec![flag(key)])
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_in_process_cache_is_bounded() {
    let cache = FlagCache::memory(2, Duration::from_secs(60));
    let loads = AtomicUsize::new(0);
    for key in ["a", "b", "a", "b"] {
        load(&cache, key, &loads).await;
    }
    assert_eq!(loads.load(Ordering::SeqCst), 2, "hits");
    load(&cache, "c", &loads).await; // evicts the oldest, a
    load(&cache, "b", &loads).await;
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    load(&cache, "a", &loads).await;
    assert_eq!(loads.load(Ordering::SeqCst), 4, "a was evicted");
}

/// A write that commits while a read is loading: the loaded (old) answer is not kept.
async fn a_write_during_a_load_is_not_overwritten(cache: FlagCache) {
    let stale = cache
        .get_or_load("k", || async {
            cache.invalidate("k").await;
            Ok::<_, ()>(vec![flag("old")])
        })
        .await
        .unwrap();
    assert_eq!(stale[0].flag_id, "old");
    let fresh = cache
        .get_or_load("k", || async { Ok::<_, ()>(vec![flag("new")]) })
        .await
        .unwrap();
    assert_eq!(fresh[0].flag_id, "new");
    // And the fresh answer is cached.
    let cached = cache
        .get_or_load("k", || async { Ok::<_, ()>(vec![flag("newer")]) })
        .await
        .unwrap();
    assert_eq!(cached[0].flag_id, "new");
}

#[tokio::test]
async fn in_process_a_write_during_a_load_wins() {
    a_write_during_a_load_is_not_overwritten(FlagCache::memory(10, Duration::from_secs(60))).await;
}

#[tokio::test]
async fn in_redis_a_write_during_a_load_wins() {
    a_write_during_a_load_is_not_overwritten(redis_cache(&redis_url(), &prefix())).await;
}
