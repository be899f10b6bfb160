//! Folding, on Postgres and SQLite: repeated attendances of the same child at the same
//! setting within the window become one notification with a count, seen updated on the
//! live stream; another child, another setting, an acknowledged notification or an
//! attendance outside the window start a new one; Publish stays idempotent by event id.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::duration::HumanDuration;
use cpis_proto::common::{NhsNumber, OdsCode};
use cpis_proto::notification::{
    AcknowledgeNotificationsRequest, ListNotificationsRequest, Notification, NotificationEvent,
    SubscribeRequest, notification_event, subscribe_response,
};
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

on_both_stores!(repeated_attendances_are_folded_into_one_notification_with_a_count);

/// Another valid (synthetic) NHS number.
const OTHER_CHILD: &str = "9990000018";

fn ods() -> Option<OdsCode> {
    Some(OdsCode {
        value: AUTHORITY.into(),
    })
}

fn of_child(mut event: NotificationEvent, nhs: &str) -> NotificationEvent {
    if let Some(notification_event::Payload::Attendance(a)) = &mut event.payload {
        a.nhs_number = Some(NhsNumber { value: nhs.into() });
    }
    event
}

fn at_setting(mut event: NotificationEvent, ods: &str) -> NotificationEvent {
    if let Some(notification_event::Payload::Attendance(a)) = &mut event.payload
        && let Some(setting) = &mut a.care_setting
    {
        setting.organisation = Some(OdsCode { value: ods.into() });
    }
    event
}

async fn inbox(h: &Harness) -> Vec<Notification> {
    h.inbox()
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
        .notifications
}

async fn repeated_attendances_are_folded_into_one_notification_with_a_count(db: &str) {
    let options = Options {
        configure: Some(Arc::new(|s| {
            s.fold_window = HumanDuration::from_secs(3600);
        })),
        ..Options::default()
    };
    let h = support::start_with(db, options, None).await;
    let mut live = h
        .inbox()
        .subscribe(with_token(
            SubscribeRequest {
                authority: ods(),
                cursor: String::new(),
                kinds: Vec::new(),
            },
            &h.social_worker(),
        ))
        .await
        .unwrap()
        .into_inner();

    let first = attendance(AUTHORITY, 1);
    let repeat = attendance(AUTHORITY, 2);
    assert_eq!(h.publish(vec![first.clone()]).await.stored_count, 1);
    let folded = h.publish(vec![repeat.clone()]).await;
    assert_eq!((folded.stored_count, folded.duplicate_count), (1, 0));
    // Idempotent by event id, folded or not.
    let again = h.publish(vec![repeat.clone(), first.clone()]).await;
    assert_eq!((again.stored_count, again.duplicate_count), (0, 2));
    h.publish(vec![
        of_child(attendance(AUTHORITY, 3), OTHER_CHILD),
        at_setting(attendance(AUTHORITY, 4), "RRK"),
    ])
    .await;

    let all = inbox(&h).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let one = &all[0];
    assert_eq!(one.event_id, first.event_id);
    assert_eq!(one.occurrence_count, 2);
    assert_eq!(one.occur_time, first.occur_time);
    assert_eq!(one.last_occur_time, repeat.occur_time);
    assert_eq!((all[1].occurrence_count, all[2].occurrence_count), (1, 1));

    // Live: the notification, then the same id again with its count, then the others.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(20), live.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(subscribe_response::Event::Notification(n)) = message.event {
            seen.push((n.notification_id, n.occurrence_count));
        }
    }
    assert_eq!(seen[0], (one.notification_id.clone(), 1));
    assert_eq!(seen[1], (one.notification_id.clone(), 2));
    assert_eq!(seen[2], (all[1].notification_id.clone(), 1));
    assert_eq!(seen[3], (all[2].notification_id.clone(), 1));

    // Once acknowledged, a repeat starts a new notification.
    h.inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(),
                notification_ids: vec![one.notification_id.clone()],
            },
            &h.social_worker(),
        ))
        .await
        .unwrap();
    h.publish(vec![attendance(AUTHORITY, 5)]).await;
    // Outside the window of the open one (first seen at +5 s): another new one.
    h.publish(vec![attendance(AUTHORITY, 5 + 7200)]).await;
    // Within it: folded.
    h.publish(vec![attendance(AUTHORITY, 6)]).await;
    let all = inbox(&h).await;
    assert_eq!(all.len(), 5, "{all:#?}");
    assert_eq!(all[3].occurrence_count, 2, "the +6 s repeat joined +5 s");
    assert_eq!(all[4].occurrence_count, 1);

    // Repeats within one batch: every event counts as stored, one notification holds them.
    let batch = h
        .publish(vec![
            at_setting(of_child(attendance(AUTHORITY, 20), OTHER_CHILD), "RAL"),
            at_setting(of_child(attendance(AUTHORITY, 21), OTHER_CHILD), "RAL"),
            at_setting(of_child(attendance(AUTHORITY, 22), OTHER_CHILD), "RAL"),
        ])
        .await;
    assert_eq!((batch.stored_count, batch.duplicate_count), (3, 0));
    let all = inbox(&h).await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].occurrence_count, 3);

    // A batch mixing both, interleaved: repeats of two open notifications, and a new setting
    // whose first attendance is stored and whose second folds into it.
    let events = vec![
        at_setting(of_child(attendance(AUTHORITY, 23), OTHER_CHILD), "RAL"),
        at_setting(attendance(AUTHORITY, 24), "RQM"),
        attendance(AUTHORITY, 25),
        at_setting(attendance(AUTHORITY, 26), "RQM"),
        at_setting(of_child(attendance(AUTHORITY, 27), OTHER_CHILD), "RAL"),
    ];
    let batch = h.publish(events.clone()).await;
    assert_eq!((batch.stored_count, batch.duplicate_count), (5, 0));
    let all = inbox(&h).await;
    assert_eq!(all.len(), 7, "{all:#?}");
    assert_eq!(all[3].occurrence_count, 3, "+25 s joined +5 s, not +7205 s");
    assert_eq!(all[4].occurrence_count, 1);
    assert_eq!(all[5].occurrence_count, 5);
    assert_eq!(all[5].last_occur_time, events[4].occur_time);
    assert_eq!(
        all[6].occurrence_count, 2,
        "+26 s joined +24 s, stored in the same batch"
    );
    assert_eq!(all[6].event_id, events[1].event_id);
    // Re-sent, in another order, the batch changes nothing.
    let again = h.publish(events.into_iter().rev().collect()).await;
    assert_eq!((again.stored_count, again.duplicate_count), (0, 5));
    assert_eq!(inbox(&h).await, all);
}
