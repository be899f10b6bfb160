//! Escalation, on Postgres and SQLite: an attendance notification left unacknowledged past
//! the (shortened) escalation time is escalated once, into the inbox, the live stream and
//! the escalation webhooks only; one acknowledged in time is not; two instances on one
//! Postgres escalate each notification once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::duration::HumanDuration;
use cpis_proto::common::OdsCode;
use cpis_proto::notification::{
    AcknowledgeNotificationsRequest, ListNotificationsRequest, Notification, NotificationKind,
    RegisterWebhookRequest, SubscribeRequest, notification, subscribe_response,
};
use support::receiver::Receiver;
use support::{AUTHORITY, Harness, Options, attendance, with_token};

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

on_both_stores!(an_unacknowledged_attendance_is_escalated_once_and_an_acknowledged_one_not);

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "a-secret-of-the-authority-0123456789";

fn ods() -> Option<OdsCode> {
    Some(OdsCode {
        value: AUTHORITY.into(),
    })
}

/// Escalation after `after`, in and out of office hours alike.
fn escalating_after(after: Duration) -> Options {
    Options {
        configure: Some(Arc::new(move |s| {
            s.escalation_after = HumanDuration::from(after);
            s.escalation_after_out_of_hours = HumanDuration::from(after);
        })),
        ..Options::default()
    }
}

async fn escalations(h: &Harness) -> Vec<Notification> {
    h.inbox()
        .list_notifications(with_token(
            ListNotificationsRequest {
                authority: ods(),
                kinds: vec![NotificationKind::Escalation as i32],
                ..ListNotificationsRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications
}

async fn wait_for_escalations(h: &Harness, count: usize) -> Vec<Notification> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = escalations(h).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} escalation(s)",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn register(h: &Harness, url: String, escalation: bool) {
    h.inbox()
        .register_webhook(with_token(
            RegisterWebhookRequest {
                authority: ods(),
                url,
                secret: SECRET.into(),
                escalation,
                description: String::new(),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap();
}

async fn an_unacknowledged_attendance_is_escalated_once_and_an_acknowledged_one_not(db: &str) {
    let receiver = Receiver::start().await;
    let h = support::start_with(db, escalating_after(Duration::from_secs(2)), None).await;
    register(&h, receiver.url("/office"), false).await;
    register(&h, receiver.url("/duty"), true).await;
    let mut live = h
        .inbox()
        .subscribe(with_token(
            SubscribeRequest {
                authority: ods(),
                cursor: String::new(),
                kinds: vec![NotificationKind::Escalation as i32],
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner();

    // Acknowledged at once: never escalated. Stored first, so it would be due first.
    h.publish(vec![attendance(AUTHORITY, 1)]).await;
    let seen = h
        .inbox()
        .list_notifications(with_token(
            ListNotificationsRequest {
                authority: ods(),
                ..ListNotificationsRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    h.inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(),
                notification_ids: vec![seen[0].notification_id.clone()],
            },
            &h.social_worker(),
        ))
        .await
        .unwrap();
    h.publish(vec![attendance(AUTHORITY, 2)]).await;
    let waiting = h
        .inbox()
        .list_notifications(with_token(
            ListNotificationsRequest {
                authority: ods(),
                unacknowledged_only: true,
                ..ListNotificationsRequest::default()
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(waiting.len(), 1);
    let waiting = &waiting[0];

    let found = wait_for_escalations(&h, 1).await;
    let escalation = &found[0];
    assert_eq!(escalation.kind, NotificationKind::Escalation as i32);
    assert!(escalation.event_id.is_empty());
    let Some(notification::Payload::Escalation(notice)) = &escalation.payload else {
        panic!("not an escalation: {escalation:?}");
    };
    assert_eq!(notice.escalated_notification_id, waiting.notification_id);
    let attendance = notice.attendance.as_ref().unwrap();
    assert_eq!(attendance.attendance_id, "att-2");
    assert!(notice.unacknowledged_for.unwrap().seconds >= 2);
    assert!(
        h.ctx
            .metrics
            .render()
            .contains("cpis_notification_escalations_total 1"),
        "the escalation is counted"
    );

    // The live stream carries it.
    let message = tokio::time::timeout(WAIT, async {
        loop {
            match live.message().await.unwrap().unwrap().event {
                Some(subscribe_response::Event::Notification(n)) => return n,
                _ => continue,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(message.notification_id, escalation.notification_id);

    // Only the escalation webhook receives it; the office one receives the attendances.
    let requests = receiver
        .wait_until(WAIT, |r| {
            r.iter()
                .any(|r| r.path == "/duty" && r.json()["kind"] == "NOTIFICATION_KIND_ESCALATION")
                && r.iter().filter(|r| r.path == "/office").count() == 2
        })
        .await;
    let duty = requests
        .iter()
        .find(|r| r.path == "/duty" && r.json()["kind"] == "NOTIFICATION_KIND_ESCALATION")
        .unwrap();
    assert_eq!(
        duty.json()["escalation"]["escalatedNotificationId"],
        waiting.notification_id
    );
    assert!(
        receiver
            .requests_to("/office")
            .iter()
            .all(|r| r.json()["kind"] == "NOTIFICATION_KIND_ATTENDANCE")
    );

    // Once: a few more worker rounds add nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(escalations(&h).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_escalate_each_notification_once() {
    let db = cpis_mesh::testkit::postgres_database().await;
    let options = escalating_after(Duration::from_millis(500));
    let a = support::start_with(&db, options.clone(), None).await;
    let b = support::start_with(&db, options, Some(a.users.clone())).await;
    const COUNT: usize = 10;
    for i in 0..COUNT {
        let h = if i % 2 == 0 { &a } else { &b };
        h.publish(vec![attendance(AUTHORITY, u32::try_from(i).unwrap())])
            .await;
    }
    wait_for_escalations(&a, COUNT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = escalations(&b).await;
    assert_eq!(found.len(), COUNT);
    let mut escalated: Vec<String> = found
        .iter()
        .map(|n| match &n.payload {
            Some(notification::Payload::Escalation(e)) => e.escalated_notification_id.clone(),
            other => panic!("not an escalation: {other:?}"),
        })
        .collect();
    escalated.sort();
    escalated.dedup();
    assert_eq!(escalated.len(), COUNT, "each notification escalated once");
}
