//! Who may read an authority's inbox, and the audit of every read and acknowledgement, on
//! Postgres and SQLite.

mod support;

use cpis_proto::common::OdsCode;
use cpis_proto::notification::{
    AcknowledgeNotificationsRequest, ListNotificationsRequest, Notification,
};
use support::{AUTHORITY, OTHER_AUTHORITY, attendance, with_token};
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
    a_user_reads_only_their_own_authoritys_inbox,
    inbox_reads_and_acknowledgements_are_audited,
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

async fn a_user_reads_only_their_own_authoritys_inbox(db: &str) {
    let h = support::start(db).await;
    h.publish(vec![attendance(OTHER_AUTHORITY, 1)]).await;
    let cases = [
        ("no token", None, Code::Unauthenticated),
        (
            "another authority's user",
            Some(h.token("sw-1", AUTHORITY, &["notification.read"])),
            Code::PermissionDenied,
        ),
        (
            "without notification.read",
            Some(h.token("sw-9", OTHER_AUTHORITY, &["flag.read"])),
            Code::PermissionDenied,
        ),
    ];
    for (case, token, code) in cases {
        let request = match &token {
            Some(token) => with_token(list(OTHER_AUTHORITY), token),
            None => tonic::Request::new(list(OTHER_AUTHORITY)),
        };
        let status = h.inbox().list_notifications(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{case}");
        let request = AcknowledgeNotificationsRequest {
            authority: ods(OTHER_AUTHORITY),
            notification_ids: vec![uuid::Uuid::new_v4().to_string()],
        };
        let request = match &token {
            Some(token) => with_token(request, token),
            None => tonic::Request::new(request),
        };
        let status = h
            .inbox()
            .acknowledge_notifications(request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{case}");
    }
    // A mesh service without an inbox rule is refused before any token is read.
    let token = h.token("sw-9", OTHER_AUTHORITY, &["notification.read"]);
    let status = h
        .client("attendance")
        .list_notifications(with_token(list(OTHER_AUTHORITY), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Its own user sees it.
    let theirs = h
        .inbox()
        .list_notifications(with_token(list(OTHER_AUTHORITY), &token))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(theirs.len(), 1);
}

async fn inbox_reads_and_acknowledgements_are_audited(db: &str) {
    let h = support::start(db).await;
    h.publish(vec![attendance(AUTHORITY, 1)]).await;
    assert!(
        h.audit_events().await.is_empty(),
        "publishing is not an inbox read"
    );
    let (all, _) = inbox(&h, list(AUTHORITY)).await;
    let token = h.social_worker();
    // A refused acknowledgement leaves no audit event: it rolls back with the rest.
    h.inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(AUTHORITY),
                notification_ids: vec![uuid::Uuid::new_v4().to_string()],
            },
            &token,
        ))
        .await
        .unwrap_err();
    h.inbox()
        .acknowledge_notifications(with_token(
            AcknowledgeNotificationsRequest {
                authority: ods(AUTHORITY),
                notification_ids: vec![all[0].notification_id.clone()],
            },
            &token,
        ))
        .await
        .unwrap();
    let _stream = h
        .inbox()
        .subscribe(with_token(
            cpis_proto::notification::SubscribeRequest {
                authority: ods(AUTHORITY),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    let events = h.audit_events().await;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            cpis_notification::audit::LIST,
            cpis_notification::audit::ACKNOWLEDGE,
            cpis_notification::audit::SUBSCRIBE,
        ]
    );
    for event in &events {
        let Some(cpis_proto::audit::actor::Kind::User(user)) =
            event.actor.as_ref().and_then(|a| a.kind.as_ref())
        else {
            panic!("not a user: {event:?}");
        };
        assert_eq!(user.user_id, "sw-1");
        assert_eq!(event.organisation, ods(AUTHORITY));
        assert_eq!(event.target, format!("inbox:{AUTHORITY}"));
        assert!(
            event
                .actor
                .as_ref()
                .unwrap()
                .calling_system
                .contains("case-management"),
            "{event:?}"
        );
    }
}
