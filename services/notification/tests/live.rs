//! `Subscribe`: backlog then live from a cursor with no gap and no duplicate at the seam,
//! keep-alives, each authority its own stream, and fan-out across two instances through a
//! real Redis.

mod support;

use std::time::Duration;

use cpis_mesh::client::MeshChannel;
use cpis_proto::common::OdsCode;
use cpis_proto::notification::notification_service_client::NotificationServiceClient;
use cpis_proto::notification::{
    KeepAlive, Notification, PublishRequest, SubscribeRequest, SubscribeResponse,
    subscribe_response,
};
use support::{AUTHORITY, Harness, OTHER_AUTHORITY, Options, attendance, with_token};
use tonic::{Code, Streaming};

/// Runs a case against a fresh Postgres database and a fresh SQLite file.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$case(&cpis_mesh::testkit::postgres_database().await).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "notification")).await;
            }
        }
    )*};
}

on_both_stores!(
    backlog_then_live_with_no_gap_or_duplicate_under_concurrent_publishing,
    an_idle_stream_gets_keep_alives_whose_cursor_misses_nothing,
    a_stream_carries_only_its_authoritys_notifications_to_its_own_users,
);

fn request(cursor: &str) -> SubscribeRequest {
    SubscribeRequest {
        authority: Some(OdsCode {
            value: AUTHORITY.into(),
        }),
        cursor: cursor.into(),
        kinds: Vec::new(),
    }
}

async fn subscribe(h: &Harness, cursor: &str) -> Streaming<SubscribeResponse> {
    h.inbox()
        .subscribe(with_token(request(cursor), &h.social_worker()))
        .await
        .unwrap()
        .into_inner()
}

enum Received {
    Notification(Box<Notification>),
    KeepAlive(KeepAlive),
}

async fn next(stream: &mut Streaming<SubscribeResponse>, within: Duration) -> Option<Received> {
    let message = tokio::time::timeout(within, stream.message()).await.ok()?;
    match message.unwrap()?.event? {
        subscribe_response::Event::Notification(n) => Some(Received::Notification(Box::new(n))),
        subscribe_response::Event::KeepAlive(k) => Some(Received::KeepAlive(k)),
    }
}

/// The next notification, skipping keep-alives; None when none comes `within`.
async fn next_notification(
    stream: &mut Streaming<SubscribeResponse>,
    within: Duration,
) -> Option<Notification> {
    let until = tokio::time::Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match next(stream, left).await? {
            Received::Notification(n) => return Some(*n),
            Received::KeepAlive(_) => {}
        }
    }
}

fn place(n: &Notification) -> i64 {
    cpis_notification::cursor::decode(&n.cursor).unwrap()
}

async fn publish_in_background(
    client: NotificationServiceClient<MeshChannel>,
    authority: &'static str,
    batches: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = client;
        for i in 0..batches {
            let events = vec![attendance(authority, i), attendance(authority, i + 1000)];
            client.publish(PublishRequest { events }).await.unwrap();
        }
    })
}

async fn backlog_then_live_with_no_gap_or_duplicate_under_concurrent_publishing(db: &str) {
    let h = support::start(db).await;
    h.publish((0..10).map(|i| attendance(AUTHORITY, i)).collect())
        .await;
    let token = h.social_worker();
    let backlog = h
        .inbox()
        .list_notifications(with_token(
            cpis_proto::notification::ListNotificationsRequest {
                authority: Some(OdsCode {
                    value: AUTHORITY.into(),
                }),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    // Publishers run while the stream starts, so the seam falls among their events.
    let publishers = [
        publish_in_background(h.client("attendance"), AUTHORITY, 15).await,
        publish_in_background(h.client("flag-registry"), AUTHORITY, 15).await,
        publish_in_background(h.client("attendance"), OTHER_AUTHORITY, 10).await,
    ];
    let mut stream = subscribe(&h, &backlog[2].cursor).await;
    let total = 10 + 2 * 2 * 15;
    let mut places = Vec::new();
    while places.len() < total - 3 {
        let n = next_notification(&mut stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("stream stalled after {places:?}"));
        assert_eq!(n.authority.as_ref().unwrap().value, AUTHORITY);
        places.push(place(&n));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let expected: Vec<i64> = (4..=i64::try_from(total).unwrap()).collect();
    assert_eq!(places, expected, "in order, no gap, no duplicate");
    assert!(
        next_notification(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing more"
    );
}

async fn an_idle_stream_gets_keep_alives_whose_cursor_misses_nothing(db: &str) {
    let options = Options {
        keep_alive: Some(Duration::from_millis(300)),
        ..Options::default()
    };
    let h = support::start_with(db, options, None).await;
    h.publish(vec![attendance(AUTHORITY, 1)]).await;
    // No cursor: only what is stored from now on.
    let mut stream = subscribe(&h, "").await;
    let keep_alive = match next(&mut stream, Duration::from_secs(5)).await {
        Some(Received::KeepAlive(k)) => k,
        Some(Received::Notification(n)) => panic!("the backlog is skipped without a cursor: {n:?}"),
        None => panic!("no keep-alive while idle"),
    };
    assert!(keep_alive.time.is_some());
    assert_eq!(
        cpis_notification::cursor::decode(&keep_alive.cursor),
        Some(1)
    );
    drop(stream);
    // Stored while nobody listened: resuming from the keep-alive's cursor gets it.
    let missed = attendance(AUTHORITY, 2);
    h.publish(vec![missed.clone()]).await;
    let mut resumed = subscribe(&h, &keep_alive.cursor).await;
    let n = next_notification(&mut resumed, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n.event_id, missed.event_id);
    let live = attendance(AUTHORITY, 3);
    h.publish(vec![live.clone()]).await;
    let n = next_notification(&mut resumed, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n.event_id, live.event_id);
}

async fn a_stream_carries_only_its_authoritys_notifications_to_its_own_users(db: &str) {
    let h = support::start(db).await;
    let foreign = h.token("sw-9", OTHER_AUTHORITY, &["notification.read"]);
    let status = h
        .inbox()
        .subscribe(with_token(request(""), &foreign))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = h.inbox().subscribe(request("")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = h
        .inbox()
        .subscribe(with_token(request("forged"), &h.social_worker()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut stream = subscribe(&h, "").await;
    h.publish(vec![attendance(OTHER_AUTHORITY, 1)]).await;
    let mine = attendance(AUTHORITY, 2);
    h.publish(vec![mine.clone()]).await;
    let n = next_notification(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n.event_id, mine.event_id);
}

/// Lets new streams finish their first database read, so that what follows can reach them
/// only live (a stream's first read would rightly pick up anything stored before it).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn redis_url() -> String {
    std::env::var("CPIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Two instances on one database; with Redis when `redis` is true, each test on its own
/// channel.
async fn two_instances(redis: bool) -> (Harness, Harness) {
    let db = cpis_mesh::testkit::postgres_database().await;
    let prefix = format!("cpis-test-{}:", uuid::Uuid::new_v4().simple());
    let options = Options {
        redis: redis.then(|| (redis_url(), prefix)),
        // Long enough that the database poll at each keep-alive cannot deliver in time.
        keep_alive: Some(Duration::from_secs(30)),
        ..Options::default()
    };
    let a = support::start_with(&db, options.clone(), None).await;
    let b = support::start_with(&db, options, Some(a.users.clone())).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_an_event_stored_by_one_instance_reaches_a_subscriber_of_the_other_exactly_once()
{
    let (a, b) = two_instances(true).await;
    let mut on_b = subscribe(&b, "").await;
    let mut on_a = subscribe(&a, "").await;
    settle().await;
    let sent: Vec<_> = (0..5).map(|i| attendance(AUTHORITY, i)).collect();
    for event in &sent {
        a.publish(vec![event.clone()]).await;
    }
    for stream in [&mut on_b, &mut on_a] {
        let mut got = Vec::new();
        for _ in 0..sent.len() {
            let n = next_notification(stream, Duration::from_secs(5))
                .await
                .expect("delivered live through Redis");
            got.push(n.event_id);
        }
        let expected: Vec<_> = sent.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(got, expected);
        assert!(
            next_notification(stream, Duration::from_millis(700))
                .await
                .is_none(),
            "exactly once"
        );
    }
    // And the other way round.
    let back = attendance(AUTHORITY, 99);
    b.publish(vec![back.clone()]).await;
    let n = next_notification(&mut on_a, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n.event_id, back.event_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_the_other_instance_does_not_hear_at_once() {
    // The control of the test above: it passes because of Redis, not of the database.
    let (a, b) = two_instances(false).await;
    let mut on_b = subscribe(&b, "").await;
    settle().await;
    a.publish(vec![attendance(AUTHORITY, 1)]).await;
    assert!(
        next_notification(&mut on_b, Duration::from_secs(2))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_fan_out_is_a_readiness_dependency_and_start_up_needs_it() {
    let shutdown = cpis_mesh::Shutdown::new();
    let channel = format!(
        "cpis-test-{}:notification:live",
        uuid::Uuid::new_v4().simple()
    );
    let fanout =
        cpis_notification::fanout::Fanout::with_redis(&redis_url(), channel, shutdown.clone())
            .await
            .unwrap();
    let check = fanout.health_check().expect("a Redis check");
    assert_eq!(check.name(), "redis");
    check.check().await.unwrap();
    assert!(
        cpis_notification::fanout::Fanout::in_process()
            .health_check()
            .is_none()
    );
    // Nothing listens on port 1: start-up fails instead of serving deaf.
    let refused = cpis_notification::fanout::Fanout::with_redis(
        "redis://127.0.0.1:1",
        "unused".to_owned(),
        shutdown.clone(),
    )
    .await;
    assert!(refused.is_err());
    shutdown.trigger();
}
