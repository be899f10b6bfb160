//! The inbox's contract, run against Postgres and SQLite: publishing (idempotent, all or
//! nothing, callers), listing (cursor pages, filters) and acknowledging (who and when
//! kept). Who may read an inbox, and the audit of reads, are in `access.rs`.

mod support;

use cpis_proto::common::OdsCode;
use cpis_proto::notification::{
    AcknowledgeNotificationsRequest, ListNotificationsRequest, Notification, NotificationKind,
    PublishRequest, notification,
};
use support::{AUTHORITY, CHILD, OTHER_AUTHORITY, attendance, superseded, with_token};
use tonic::Code;

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
    a_duplicate_publish_is_stored_once,
    published_events_land_in_their_authoritys_inbox_in_order,
    only_attendance_and_flag_registry_may_publish,
    bad_events_are_refused_naming_each_field_and_nothing_is_stored,
    the_inbox_pages_by_cursor_and_filters,
    acknowledgements_keep_who_and_when_and_the_first_wins,
    acknowledging_an_unknown_or_foreign_id_changes_nothing,
    concurrent_publishes_get_consecutive_places,
);

fn ods(value: &str) -> Option<OdsCode> {
    Some(OdsCode {
        value: value.into(),
    })
}

fn list(authority: &str) -> ListNotificationsRequest {
    ListNotificationsRequest {
        authority: ods(authority),
        ..ListNotificationsRequest::default()
    }
}

async fn inbox(
    h: &support::Harness,
    request: ListNotificationsRequest,
) -> (Vec<Notification>, String) {
    let token = h.social_worker();
    let response = h
        .inbox()
        .list_notifications(with_token(request, &token))
        .await
        .unwrap()
        .into_inner();
    (response.notifications, response.next_page_token)
}

async fn a_duplicate_publish_is_stored_once(db: &str) {
    let h = support::start(db).await;
    let event = attendance(AUTHORITY, 1);
    let first = h.publish(vec![event.clone()]).await;
    assert_eq!((first.stored_count, first.duplicate_count), (1, 0));
    // Resent alone, and again inside a batch with a new event and itself twice.
    let again = h.publish(vec![event.clone()]).await;
    assert_eq!((again.stored_count, again.duplicate_count), (0, 1));
    let fresh = attendance(AUTHORITY, 2);
    let mixed = h.publish(vec![event.clone(), fresh.clone(), fresh]).await;
    assert_eq!((mixed.stored_count, mixed.duplicate_count), (1, 2));
    let (all, _) = inbox(&h, list(AUTHORITY)).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].event_id, event.event_id);
}

async fn published_events_land_in_their_authoritys_inbox_in_order(db: &str) {
    let h = support::start(db).await;
    let mine = attendance(AUTHORITY, 1);
    let change = superseded(AUTHORITY);
    h.publish(vec![
        mine.clone(),
        attendance(OTHER_AUTHORITY, 2),
        change.clone(),
    ])
    .await;
    let (all, next) = inbox(&h, list(AUTHORITY)).await;
    assert!(next.is_empty());
    assert_eq!(
        all.len(),
        2,
        "the other authority's event is not in this inbox"
    );
    let first = &all[0];
    assert_eq!(first.event_id, mine.event_id);
    assert_eq!(first.kind, NotificationKind::Attendance as i32);
    assert_eq!(first.authority, ods(AUTHORITY));
    assert_eq!(first.occurrence_count, 1);
    assert_eq!(first.occur_time, mine.occur_time);
    assert_eq!(first.last_occur_time, mine.occur_time);
    assert!(first.create_time.is_some());
    assert!(first.acknowledgement.is_none());
    assert!(!first.cursor.is_empty());
    assert!(uuid::Uuid::parse_str(&first.notification_id).is_ok());
    match &first.payload {
        Some(notification::Payload::Attendance(a)) => {
            // Normalised to its ten digits on the way in.
            assert_eq!(a.nhs_number.as_ref().unwrap().value, CHILD);
            assert_eq!(a.care_setting.as_ref().unwrap().phone, "020 7188 7188");
        }
        other => panic!("not an attendance: {other:?}"),
    }
    assert_eq!(all[1].event_id, change.event_id);
    assert_eq!(all[1].kind, NotificationKind::NhsNumberSuperseded as i32);
    assert!(matches!(
        all[1].payload,
        Some(notification::Payload::NhsNumberChange(_))
    ));
}

async fn only_attendance_and_flag_registry_may_publish(db: &str) {
    let h = support::start(db).await;
    for caller in ["attendance", "flag-registry"] {
        let response = h
            .client(caller)
            .publish(PublishRequest {
                events: vec![attendance(AUTHORITY, 1)],
            })
            .await;
        assert!(response.is_ok(), "{caller}: {response:?}");
    }
    for caller in ["audit", "identity", "org:case-management"] {
        let status = h
            .client(caller)
            .publish(PublishRequest {
                events: vec![attendance(AUTHORITY, 1)],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{caller}");
    }
    let (all, _) = inbox(&h, list(AUTHORITY)).await;
    assert_eq!(all.len(), 2);
}

async fn bad_events_are_refused_naming_each_field_and_nothing_is_stored(db: &str) {
    let h = support::start(db).await;
    let good = attendance(AUTHORITY, 1);
    let mut bad_id = attendance(AUTHORITY, 2);
    bad_id.event_id = "not-a-uuid".into();
    let mut escalation = attendance(AUTHORITY, 3);
    escalation.kind = NotificationKind::Escalation as i32;
    let mut mismatched = superseded(AUTHORITY);
    mismatched.kind = NotificationKind::Attendance as i32;
    let mut bad_number = attendance(AUTHORITY, 4);
    if let Some(cpis_proto::notification::notification_event::Payload::Attendance(a)) =
        bad_number.payload.as_mut()
    {
        a.nhs_number.as_mut().unwrap().value = "9434765918".into();
    }
    let mut no_authority = attendance(AUTHORITY, 5);
    no_authority.authority = None;
    let status = h
        .client("attendance")
        .publish(PublishRequest {
            events: vec![
                good,
                bad_id,
                escalation,
                mismatched,
                bad_number,
                no_authority,
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|f| f.field)
        .collect();
    for field in [
        "events[1].event_id",
        "events[2].kind",
        "events[3].payload",
        "events[4].attendance.nhs_number",
        "events[5].authority",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not in {fields:?}"
        );
    }
    assert!(!status.message().contains("9434765918"));
    let (all, _) = inbox(&h, list(AUTHORITY)).await;
    assert!(all.is_empty(), "nothing of a refused batch is stored");
    let empty = h
        .client("attendance")
        .publish(PublishRequest { events: vec![] })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

async fn the_inbox_pages_by_cursor_and_filters(db: &str) {
    let h = support::start(db).await;
    let events: Vec<_> = (0..7).map(|i| attendance(AUTHORITY, i)).collect();
    h.publish(events.clone()).await;
    h.publish(vec![superseded(AUTHORITY)]).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = inbox(
            &h,
            ListNotificationsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..list(AUTHORITY)
            },
        )
        .await;
        assert!(page.len() <= 3);
        seen.extend(page.into_iter().map(|n| n.event_id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen.len(), 8);
    let expected: Vec<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(seen[..7], expected[..]);

    let (only_changes, _) = inbox(
        &h,
        ListNotificationsRequest {
            kinds: vec![NotificationKind::NhsNumberSuperseded as i32],
            ..list(AUTHORITY)
        },
    )
    .await;
    assert_eq!(only_changes.len(), 1);
    assert_eq!(
        only_changes[0].kind,
        NotificationKind::NhsNumberSuperseded as i32
    );

    let token = h.social_worker();
    let status = h
        .inbox()
        .list_notifications(with_token(
            ListNotificationsRequest {
                page_token: "forged".into(),
                ..list(AUTHORITY)
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn acknowledgements_keep_who_and_when_and_the_first_wins(db: &str) {
    let h = support::start(db).await;
    h.publish((0..4).map(|i| attendance(AUTHORITY, i)).collect())
        .await;
    let (all, _) = inbox(&h, list(AUTHORITY)).await;
    let ids = vec![
        all[2].notification_id.clone(),
        all[0].notification_id.clone(),
    ];
    let first = h.token("sw-1", AUTHORITY, &["notification.read"]);
    let acknowledged = h
        .inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(AUTHORITY),
                notification_ids: ids.clone(),
            },
            &first,
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    let returned: Vec<_> = acknowledged
        .iter()
        .map(|n| n.notification_id.clone())
        .collect();
    assert_eq!(returned, ids, "in the order of the request");
    let ack = acknowledged[0].acknowledgement.clone().unwrap();
    let by = ack.acknowledged_by.unwrap();
    assert_eq!(by.user_id, "sw-1");
    assert_eq!(by.organisation, ods(AUTHORITY));
    assert_eq!(by.role, "social_worker");
    let when = ack.acknowledge_time.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - when.seconds).abs() < 60);

    // A second acknowledgement by someone else keeps the first.
    let second = h.token("sw-2", AUTHORITY, &["notification.read"]);
    let again = h
        .inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(AUTHORITY),
                notification_ids: vec![ids[0].clone()],
            },
            &second,
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    let kept = again[0].acknowledgement.clone().unwrap();
    assert_eq!(kept.acknowledged_by.unwrap().user_id, "sw-1");
    assert_eq!(kept.acknowledge_time.unwrap(), when);

    let (open, _) = inbox(
        &h,
        ListNotificationsRequest {
            unacknowledged_only: true,
            ..list(AUTHORITY)
        },
    )
    .await;
    let open: Vec<_> = open.into_iter().map(|n| n.notification_id).collect();
    assert_eq!(
        open,
        vec![
            all[1].notification_id.clone(),
            all[3].notification_id.clone()
        ]
    );
}

async fn acknowledging_an_unknown_or_foreign_id_changes_nothing(db: &str) {
    let h = support::start(db).await;
    h.publish(vec![
        attendance(AUTHORITY, 1),
        attendance(OTHER_AUTHORITY, 2),
    ])
    .await;
    let (mine, _) = inbox(&h, list(AUTHORITY)).await;
    let theirs_token = h.token("sw-9", OTHER_AUTHORITY, &["notification.read"]);
    let theirs = h
        .inbox()
        .list_notifications(with_token(list(OTHER_AUTHORITY), &theirs_token))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    let token = h.social_worker();
    for foreign in [
        theirs[0].notification_id.clone(),
        uuid::Uuid::new_v4().to_string(),
    ] {
        let status = h
            .inbox()
            .acknowledge_notifications(with_token(
                AcknowledgeNotificationsRequest {
                    authority: ods(AUTHORITY),
                    notification_ids: vec![mine[0].notification_id.clone(), foreign],
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    let (after, _) = inbox(&h, list(AUTHORITY)).await;
    assert!(
        after[0].acknowledgement.is_none(),
        "nothing was acknowledged"
    );
    let status = h
        .inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(AUTHORITY),
                notification_ids: vec!["nope".into()],
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn concurrent_publishes_get_consecutive_places(db: &str) {
    let h = support::start(db).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut client = h.client("attendance");
        tasks.push(tokio::spawn(async move {
            let events = (0..5).map(|j| attendance(AUTHORITY, i * 10 + j)).collect();
            client.publish(PublishRequest { events }).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (all, _) = inbox(
        &h,
        ListNotificationsRequest {
            page_size: 100,
            ..list(AUTHORITY)
        },
    )
    .await;
    assert_eq!(all.len(), 40);
    let places: Vec<_> = all
        .iter()
        .map(|n| cpis_notification::cursor::decode(&n.cursor).unwrap())
        .collect();
    assert_eq!(places, (1..=40).collect::<Vec<i64>>());
}
