//! Webhooks against a real receiver, on Postgres and SQLite: signed deliveries verifiable
//! with either secret during a rotation, retries with the attempt log, dead letters,
//! HTTPS with a configured CA, URL rules, unregistering, the audit of registrations and
//! rotations; and on one Postgres, two instances never delivering the same delivery at
//! once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::duration::HumanDuration;
use cpis_notification::signature;
use cpis_proto::common::OdsCode;
use cpis_proto::notification::{
    DeliveryAttempt, DeliveryState, ListDeliveryAttemptsRequest, ListWebhookDeliveriesRequest,
    ListWebhooksRequest, RegisterWebhookRequest, RotateWebhookSecretRequest,
    UnregisterWebhookRequest, Webhook, WebhookDelivery,
};
use support::receiver::{Received, Receiver};
use support::{AUTHORITY, Harness, Options, attendance, with_token};
use tonic::Code;

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
    deliveries_are_signed_and_verify_with_either_secret_during_a_rotation,
    a_failed_delivery_is_retried_and_every_attempt_is_logged,
    a_delivery_failing_past_its_max_age_is_dead_lettered,
    http_to_a_non_loopback_host_and_short_secrets_are_refused,
    unregistering_cancels_pending_deliveries_and_keeps_the_inbox,
    registrations_and_rotations_are_audited_without_secrets,
    webhooks_and_deliveries_page_and_bad_filters_are_refused,
);

const SECRET: &str = "first-secret-of-the-authority-0123456789";
const NEW_SECRET: &str = "second-secret-of-the-authority-0123456789";
const THIRD_SECRET: &str = "third-secret-of-the-authority-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn ods() -> Option<OdsCode> {
    Some(OdsCode {
        value: AUTHORITY.into(),
    })
}

fn options(
    configure: impl Fn(&mut cpis_notification::NotificationSection) + Send + Sync + 'static,
) -> Options {
    Options {
        configure: Some(Arc::new(configure)),
        ..Options::default()
    }
}

/// Quick retries for tests.
fn fast_retries(section: &mut cpis_notification::NotificationSection) {
    section.delivery_backoff_base = HumanDuration::from_millis(20);
    section.delivery_backoff_cap = HumanDuration::from_millis(100);
    section.delivery_timeout = HumanDuration::from_secs(5);
}

async fn register(h: &Harness, url: &str, secret: &str, escalation: bool) -> Webhook {
    h.inbox()
        .register_webhook(with_token(
            RegisterWebhookRequest {
                authority: ods(),
                url: url.into(),
                secret: secret.into(),
                escalation,
                description: "case management".into(),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap()
}

async fn deliveries(h: &Harness, states: &[DeliveryState]) -> Vec<WebhookDelivery> {
    h.inbox()
        .list_webhook_deliveries(with_token(
            ListWebhookDeliveriesRequest {
                authority: ods(),
                states: states.iter().map(|s| *s as i32).collect(),
                ..ListWebhookDeliveriesRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

async fn attempts(h: &Harness, delivery_id: &str) -> Vec<DeliveryAttempt> {
    h.inbox()
        .list_delivery_attempts(with_token(
            ListDeliveryAttemptsRequest {
                authority: ods(),
                delivery_id: delivery_id.into(),
                ..ListDeliveryAttemptsRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .attempts
}

/// Polls the deliveries until `accept` holds.
async fn wait_for_deliveries(
    h: &Harness,
    states: &[DeliveryState],
    accept: impl Fn(&[WebhookDelivery]) -> bool,
) -> Vec<WebhookDelivery> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = deliveries(h, states).await;
        if accept(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never reached the expected state: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn verifies(request: &Received, secret: &str) -> bool {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signature::verify(
        request.header(signature::HEADER),
        &request.body,
        secret.as_bytes(),
        now,
        signature::DEFAULT_TOLERANCE_SECS,
    )
    .is_ok()
}

async fn deliveries_are_signed_and_verify_with_either_secret_during_a_rotation(db: &str) {
    let receiver = Receiver::start().await;
    let h = support::start(db).await;
    let hook = register(&h, &receiver.url("/hook"), SECRET, false).await;
    assert!(hook.previous_secret_expire_time.is_none());
    let event = attendance(AUTHORITY, 1);
    h.publish(vec![event.clone()]).await;

    let first = receiver.wait_until(WAIT, |r| r.len() == 1).await.remove(0);
    assert_eq!(first.path, "/hook");
    assert_eq!(first.header("content-type"), "application/json");
    assert!(verifies(&first, SECRET));
    assert!(!verifies(&first, NEW_SECRET));
    assert_eq!(first.header(signature::HEADER).matches("v1=").count(), 1);
    let body = first.json();
    assert_eq!(body["eventId"], event.event_id);
    assert_eq!(body["kind"], "NOTIFICATION_KIND_ATTENDANCE");
    assert_eq!(body["authority"]["value"], AUTHORITY);
    assert_eq!(body["attendance"]["nhsNumber"]["value"], support::CHILD);
    let delivered = wait_for_deliveries(&h, &[DeliveryState::Delivered], |d| d.len() == 1).await;
    assert_eq!(first.header("cpis-delivery-id"), delivered[0].delivery_id);
    assert_eq!(delivered[0].notification_id, body["notificationId"]);
    assert_eq!(delivered[0].attempt_count, 1);
    assert!(delivered[0].complete_time.is_some());
    assert!(delivered[0].next_attempt_time.is_none());

    // Rotation with the default overlap: both secrets sign.
    let rotated = h
        .inbox()
        .rotate_webhook_secret(with_token(
            RotateWebhookSecretRequest {
                authority: ods(),
                webhook_id: hook.webhook_id.clone(),
                new_secret: NEW_SECRET.into(),
                previous_secret_validity: None,
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    assert!(rotated.previous_secret_expire_time.is_some());
    h.publish(vec![attendance(AUTHORITY, 2)]).await;
    let second = receiver.wait_until(WAIT, |r| r.len() == 2).await.remove(1);
    assert_eq!(second.header(signature::HEADER).matches("v1=").count(), 2);
    assert!(verifies(&second, SECRET), "the old secret still verifies");
    assert!(verifies(&second, NEW_SECRET), "the new secret verifies");

    // Finishing the rotation at once (zero overlap): only the newest secret signs.
    let finished = h
        .inbox()
        .rotate_webhook_secret(with_token(
            RotateWebhookSecretRequest {
                authority: ods(),
                webhook_id: hook.webhook_id.clone(),
                new_secret: THIRD_SECRET.into(),
                previous_secret_validity: Some(prost_types::Duration::default()),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    assert!(finished.previous_secret_expire_time.is_none());
    h.publish(vec![attendance(AUTHORITY, 3)]).await;
    let third = receiver.wait_until(WAIT, |r| r.len() == 3).await.remove(2);
    assert!(verifies(&third, THIRD_SECRET));
    assert!(!verifies(&third, NEW_SECRET));
    assert!(!verifies(&third, SECRET));

    // The webhook as listed: never a secret (the message has no field for one).
    let listed = h
        .inbox()
        .list_webhooks(with_token(
            ListWebhooksRequest {
                authority: ods(),
                ..ListWebhooksRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.webhooks.len(), 1);
    assert_eq!(listed.webhooks[0].url, receiver.url("/hook"));
}

async fn a_failed_delivery_is_retried_and_every_attempt_is_logged(db: &str) {
    let receiver = Receiver::start().await;
    receiver.script(&[500]);
    let h = support::start_with(db, options(fast_retries), None).await;
    register(&h, &receiver.url("/hook"), SECRET, false).await;
    h.publish(vec![attendance(AUTHORITY, 1)]).await;

    let requests = receiver.wait_until(WAIT, |r| r.len() == 2).await;
    assert_eq!((requests[0].status, requests[1].status), (500, 200));
    assert_eq!(
        requests[0].header("cpis-delivery-id"),
        requests[1].header("cpis-delivery-id"),
        "a retry is the same delivery"
    );
    let delivered = wait_for_deliveries(&h, &[DeliveryState::Delivered], |d| d.len() == 1).await;
    let delivery = &delivered[0];
    assert_eq!(delivery.attempt_count, 2);
    assert!(
        delivery.last_error.contains("500"),
        "{}",
        delivery.last_error
    );

    let log = attempts(&h, &delivery.delivery_id).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    // Newest first.
    assert_eq!(
        (log[0].attempt_number, log[0].http_status, log[0].success),
        (2, 200, true)
    );
    assert!(log[0].error.is_empty());
    assert_eq!(
        (log[1].attempt_number, log[1].http_status, log[1].success),
        (1, 500, false)
    );
    assert!(!log[1].error.is_empty());
    for attempt in &log {
        assert!(attempt.latency.is_some() && attempt.attempt_time.is_some());
        assert_eq!(attempt.delivery_id, delivery.delivery_id);
    }
    // Operators see both attempts on /metrics.
    let metrics = h.ctx.metrics.render();
    for line in [
        "cpis_webhook_delivery_attempts_total{outcome=\"retrying\"} 1",
        "cpis_webhook_delivery_attempts_total{outcome=\"delivered\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

async fn a_delivery_failing_past_its_max_age_is_dead_lettered(db: &str) {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(503);
    let h = support::start_with(
        db,
        options(|s| {
            fast_retries(s);
            s.delivery_max_age = HumanDuration::from_millis(300);
        }),
        None,
    )
    .await;
    register(&h, &receiver.url("/hook"), SECRET, false).await;
    h.publish(vec![attendance(AUTHORITY, 1)]).await;

    let dead = wait_for_deliveries(&h, &[DeliveryState::DeadLettered], |d| d.len() == 1).await;
    let delivery = &dead[0];
    assert!(delivery.attempt_count >= 2, "retried before giving up");
    assert!(delivery.complete_time.is_some());
    assert!(delivery.next_attempt_time.is_none());
    assert!(delivery.last_error.contains("503"));
    assert!(deliveries(&h, &[DeliveryState::Pending]).await.is_empty());
    let log = attempts(&h, &delivery.delivery_id).await;
    assert_eq!(log.len(), delivery.attempt_count as usize);
    assert!(log.iter().all(|a| !a.success && a.http_status == 503));
    // Nothing was attempted after the dead letter.
    let seen = receiver.requests().len();
    assert_eq!(seen, log.len());
}

async fn http_to_a_non_loopback_host_and_short_secrets_are_refused(db: &str) {
    let h = support::start(db).await;
    let status = h
        .inbox()
        .register_webhook(with_token(
            RegisterWebhookRequest {
                authority: ods(),
                url: "http://cms.example.gov.uk/hook".into(),
                secret: "too-short".into(),
                escalation: false,
                description: String::new(),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, vec!["url".to_owned(), "secret".to_owned()]);
    // Nothing was registered.
    let listed = h
        .inbox()
        .list_webhooks(with_token(
            ListWebhooksRequest {
                authority: ods(),
                ..ListWebhooksRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.webhooks.is_empty());
    // Another authority's user cannot register for this one.
    let outsider = h.token("sw-2", support::OTHER_AUTHORITY, &["notification.read"]);
    let status = h
        .inbox()
        .register_webhook(with_token(
            RegisterWebhookRequest {
                authority: ods(),
                url: "https://cms.example.gov.uk/hook".into(),
                secret: SECRET.into(),
                escalation: false,
                description: String::new(),
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn unregistering_cancels_pending_deliveries_and_keeps_the_inbox(db: &str) {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(500);
    let h = support::start_with(
        db,
        options(|s| {
            s.delivery_backoff_base = HumanDuration::from_secs(3600);
            s.delivery_backoff_cap = HumanDuration::from_secs(3600);
        }),
        None,
    )
    .await;
    let hook = register(&h, &receiver.url("/hook"), SECRET, false).await;
    h.publish(vec![attendance(AUTHORITY, 1)]).await;
    // The first attempt fails; the next is an hour away.
    receiver.wait_until(WAIT, |r| r.len() == 1).await;
    wait_for_deliveries(&h, &[DeliveryState::Pending], |d| {
        d.len() == 1 && d[0].attempt_count == 1
    })
    .await;
    for _ in 0..2 {
        // Idempotent: the second changes nothing.
        h.inbox()
            .unregister_webhook(with_token(
                UnregisterWebhookRequest {
                    authority: ods(),
                    webhook_id: hook.webhook_id.clone(),
                },
                &h.social_worker(),
            ))
            .await
            .unwrap();
    }
    let cancelled = deliveries(&h, &[DeliveryState::Cancelled]).await;
    assert_eq!(cancelled.len(), 1);
    assert!(cancelled[0].complete_time.is_some());
    let status = h
        .inbox()
        .unregister_webhook(with_token(
            UnregisterWebhookRequest {
                authority: ods(),
                webhook_id: uuid::Uuid::now_v7().to_string(),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // New notifications create no delivery to it; the inbox keeps them.
    h.publish(vec![attendance(AUTHORITY, 2)]).await;
    assert_eq!(deliveries(&h, &[]).await.len(), 1);
}

async fn registrations_and_rotations_are_audited_without_secrets(db: &str) {
    let h = support::start(db).await;
    let hook = register(&h, "https://cms.example.gov.uk/hook", SECRET, true).await;
    h.inbox()
        .rotate_webhook_secret(with_token(
            RotateWebhookSecretRequest {
                authority: ods(),
                webhook_id: hook.webhook_id.clone(),
                new_secret: NEW_SECRET.into(),
                previous_secret_validity: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap();
    let events = h.audit_events().await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "notification.webhook.register",
            "notification.webhook.rotate_secret"
        ]
    );
    for event in &events {
        assert_eq!(event.target, format!("webhook:{}", hook.webhook_id));
        let text = format!("{event:?}");
        assert!(!text.contains(SECRET) && !text.contains(NEW_SECRET));
    }
    // Without a key the stored secret is marked unsealed; with one it is not readable.
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let sealed = support::start_with(
        db,
        options(|s| s.webhook_secret_key = Some(KEY.into())),
        None,
    )
    .await;
    let other = register(
        &sealed,
        "https://cms.example.gov.uk/other",
        THIRD_SECRET,
        false,
    )
    .await;
    let id = uuid::Uuid::parse_str(&other.webhook_id).unwrap();
    let stored = stored_secret(&sealed, id).await;
    assert!(
        !stored
            .windows(16)
            .any(|w| w == &THIRD_SECRET.as_bytes()[..16])
    );
}

async fn stored_secret(h: &Harness, id: uuid::Uuid) -> Vec<u8> {
    const SQL: &str = "SELECT secret FROM webhooks WHERE webhook_id = $1";
    match &h.db {
        cpis_mesh::db::Database::Postgres(pool) => sqlx::query_scalar(SQL)
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap(),
        cpis_mesh::db::Database::Sqlite(pool) => sqlx::query_scalar(SQL)
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_deliveries_trust_the_configured_ca() {
    let receiver = Receiver::start_tls().await;
    let ca = receiver.ca_file.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = cpis_mesh::testkit::sqlite_database(dir.path(), "notification");
    let h = support::start_with(
        &db,
        options(move |s| s.webhook_ca_file = Some(ca.display().to_string())),
        None,
    )
    .await;
    register(&h, &receiver.url("/secure"), SECRET, false).await;
    h.publish(vec![attendance(AUTHORITY, 1)]).await;
    let request = receiver.wait_until(WAIT, |r| r.len() == 1).await.remove(0);
    assert!(verifies(&request, SECRET));
    wait_for_deliveries(&h, &[DeliveryState::Delivered], |d| d.len() == 1).await;

    // Without the CA the receiver's certificate is not trusted: the attempt fails on TLS.
    // (Its own database: the first instance's worker would deliver its deliveries.)
    let other = cpis_mesh::testkit::sqlite_database(dir.path(), "untrusting");
    let untrusting = support::start_with(&other, options(fast_retries), None).await;
    let hook = register(&untrusting, &receiver.url("/untrusted"), SECRET, false).await;
    untrusting.publish(vec![attendance(AUTHORITY, 2)]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let failed = untrusting
            .inbox()
            .list_delivery_attempts(with_token(
                ListDeliveryAttemptsRequest {
                    authority: ods(),
                    webhook_id: hook.webhook_id.clone(),
                    ..ListDeliveryAttemptsRequest::default()
                },
                &untrusting.social_worker(),
            ))
            .await
            .unwrap()
            .into_inner()
            .attempts;
        if let Some(attempt) = failed.first() {
            assert_eq!(attempt.http_status, 0);
            assert!(attempt.error.contains("TLS"), "{}", attempt.error);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt logged");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(receiver.requests_to("/untrusted").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_never_deliver_the_same_delivery_at_once() {
    let db = cpis_mesh::testkit::postgres_database().await;
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight while the other instance claims.
    receiver.delay(Duration::from_millis(50));
    let a = support::start(&db).await;
    let b = support::start_with(&db, Options::default(), Some(a.users.clone())).await;
    register(&a, &receiver.url("/hook"), SECRET, false).await;
    const COUNT: usize = 40;
    for i in 0..COUNT {
        let h = if i % 2 == 0 { &a } else { &b };
        h.publish(vec![attendance(AUTHORITY, u32::try_from(i).unwrap())])
            .await;
    }
    let requests = receiver.wait_until(WAIT, |r| r.len() >= COUNT).await;
    wait_for_deliveries(&a, &[DeliveryState::Delivered], |d| d.len() == COUNT).await;
    let mut ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("cpis-delivery-id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), COUNT);
    assert_eq!(requests.len(), COUNT, "each delivery was made exactly once");
    assert_eq!(receiver.overlaps(), 0);
}

async fn webhooks_and_deliveries_page_and_bad_filters_are_refused(db: &str) {
    let receiver = Receiver::start().await;
    let h = support::start(db).await;
    let mut registered = Vec::new();
    for path in ["/a", "/b", "/c"] {
        registered.push(
            register(&h, &receiver.url(path), SECRET, false)
                .await
                .webhook_id,
        );
    }
    let list = |page_token: String| {
        let mut client = h.inbox();
        let token = h.social_worker();
        async move {
            client
                .list_webhooks(with_token(
                    ListWebhooksRequest {
                        authority: ods(),
                        page_size: 2,
                        page_token,
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = list(String::new()).await;
    assert_eq!(first.webhooks.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = list(first.next_page_token).await;
    assert!(second.next_page_token.is_empty());
    let ids: Vec<String> = first
        .webhooks
        .iter()
        .chain(&second.webhooks)
        .map(|w| w.webhook_id.clone())
        .collect();
    assert_eq!(ids, registered, "oldest first");

    h.publish(vec![attendance(AUTHORITY, 1)]).await;
    wait_for_deliveries(&h, &[DeliveryState::Delivered], |d| d.len() == 3).await;
    let page = |page_token: String| {
        let mut client = h.inbox();
        let token = h.social_worker();
        async move {
            client
                .list_webhook_deliveries(with_token(
                    ListWebhookDeliveriesRequest {
                        authority: ods(),
                        page_size: 2,
                        page_token,
                        ..ListWebhookDeliveriesRequest::default()
                    },
                    &token,
                ))
                .await
        }
    };
    let first = page(String::new()).await.unwrap().into_inner();
    assert_eq!(first.deliveries.len(), 2);
    let second = page(first.next_page_token.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.deliveries.len(), 1);
    assert!(second.next_page_token.is_empty());
    assert!(
        first.deliveries[0].delivery_id > first.deliveries[1].delivery_id,
        "newest first"
    );
    let status = page("not-a-token".into()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = h
        .inbox()
        .list_webhook_deliveries(with_token(
            ListWebhookDeliveriesRequest {
                authority: ods(),
                states: vec![42],
                ..ListWebhookDeliveriesRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
