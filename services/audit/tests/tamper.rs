//! Tampering done directly in Postgres as a superuser (triggers disabled, as an attacker
//! with full database access would), detected from outside by the verifier: full
//! recomputation names the first bad index; a consistency check against an earlier
//! checkpoint catches a rewritten history.

mod support;

use cpis_audit::verify::{Accepted, Verifier, VerifyError};
use cpis_mesh::testkit::postgres_database;
use sqlx::{Connection, PgConnection};
use support::{Harness, checkpoint_key, events};

/// A log of 20 events with an accepted checkpoint, and a superuser connection that bypasses
/// the append-only triggers.
async fn log_of_twenty() -> (Harness, Verifier, Accepted, PgConnection) {
    let db = postgres_database().await;
    let h = support::start(&db, None).await;
    h.append(events(20)).await;
    let verifier = Verifier::new(
        h.channel("org:privacy-portal"),
        checkpoint_key(),
        Some(h.token(&["audit.read"])),
    );
    let accepted = verifier.latest(None).await.unwrap();
    assert_eq!(verifier.full(&accepted, None).await.unwrap(), 20);
    let mut attacker = PgConnection::connect(&db).await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut attacker)
        .await
        .unwrap();
    (h, verifier, accepted, attacker)
}

async fn first_bad_index(verifier: &Verifier, accepted: &Accepted) -> u64 {
    match verifier.full(accepted, None).await {
        Err(VerifyError::BadIndex { index, .. }) => index,
        other => panic!("tampering not detected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_altered_event_is_named() {
    let (_h, verifier, accepted, mut attacker) = log_of_twenty().await;
    // Change one byte of what was hashed (the reason text of event 5).
    sqlx::query("UPDATE audit_events SET leaf_data = overlay(leaf_data placing 'X'::bytea from position('check 5'::bytea in leaf_data) + 6 for 1) WHERE idx = 5")
        .execute(&mut attacker)
        .await
        .unwrap();
    assert_eq!(first_bad_index(&verifier, &accepted).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_altered_search_column_is_named() {
    let (_h, verifier, accepted, mut attacker) = log_of_twenty().await;
    // Hide event 8 from searches about the child.
    sqlx::query("UPDATE audit_events SET subject_nhs_number = NULL WHERE idx = 8")
        .execute(&mut attacker)
        .await
        .unwrap();
    assert_eq!(first_bad_index(&verifier, &accepted).await, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_event_is_named() {
    let (_h, verifier, accepted, mut attacker) = log_of_twenty().await;
    sqlx::query("DELETE FROM audit_events WHERE idx = 3")
        .execute(&mut attacker)
        .await
        .unwrap();
    assert_eq!(first_bad_index(&verifier, &accepted).await, 3);
    // The last one, too.
    let (_h, verifier, accepted, mut attacker) = log_of_twenty().await;
    sqlx::query("DELETE FROM audit_events WHERE idx = 19")
        .execute(&mut attacker)
        .await
        .unwrap();
    assert_eq!(first_bad_index(&verifier, &accepted).await, 19);
}

#[tokio::test(flavor = "multi_thread")]
async fn swapped_events_are_named() {
    let (_h, verifier, accepted, mut attacker) = log_of_twenty().await;
    // Swap the contents of rows 2 and 7, keeping each row's own index, id and columns
    // consistent, as a careful attacker would: only the order changes.
    sqlx::query(
        "UPDATE audit_events a SET leaf_data = b.leaf_data, event_id = b.event_id, \
         subject_nhs_number = b.subject_nhs_number, actor = b.actor, actor_organisation = b.actor_organisation, \
         action = b.action, event_time_us = b.event_time_us, trace_id = b.trace_id \
         FROM (SELECT * FROM audit_events WHERE idx IN (2, 7)) b WHERE a.idx IN (2, 7) AND b.idx <> a.idx",
    )
    .execute(&mut attacker)
    .await
    .unwrap_err(); // event_id is unique: the naive swap is refused by the database itself.
    sqlx::query("ALTER TABLE audit_events DROP CONSTRAINT audit_events_event_id_key")
        .execute(&mut attacker)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE audit_events a SET leaf_data = b.leaf_data, event_id = b.event_id, \
         subject_nhs_number = b.subject_nhs_number, actor = b.actor, actor_organisation = b.actor_organisation, \
         action = b.action, event_time_us = b.event_time_us, trace_id = b.trace_id \
         FROM (SELECT * FROM audit_events WHERE idx IN (2, 7)) b WHERE a.idx IN (2, 7) AND b.idx <> a.idx",
    )
    .execute(&mut attacker)
    .await
    .unwrap();
    assert_eq!(first_bad_index(&verifier, &accepted).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_and_reinsert_with_one_event_altered_or_left_out_is_named() {
    for (altered, left_out) in [(Some(11), None), (None, Some(6))] {
        let (_h, verifier, accepted, mut attacker) = log_of_twenty().await;
        sqlx::query("CREATE TEMP TABLE copy AS SELECT * FROM audit_events")
            .execute(&mut attacker)
            .await
            .unwrap();
        sqlx::query("TRUNCATE audit_events")
            .execute(&mut attacker)
            .await
            .unwrap();
        if let Some(index) = altered {
            sqlx::query("UPDATE copy SET leaf_data = overlay(leaf_data placing 'k'::bytea from position('attendance.check'::bytea in leaf_data) + 14 for 1) WHERE idx = $1")
                .bind(index)
                .execute(&mut attacker)
                .await
                .unwrap();
        }
        let skip = left_out.unwrap_or(-1);
        sqlx::query("INSERT INTO audit_events SELECT * FROM copy WHERE idx <> $1 ORDER BY idx")
            .bind(skip)
            .execute(&mut attacker)
            .await
            .unwrap();
        let expected = altered.or(left_out).unwrap();
        assert_eq!(
            first_bad_index(&verifier, &accepted).await,
            u64::try_from(expected).unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_history_fails_the_consistency_check_against_an_earlier_checkpoint() {
    let (h, verifier, accepted, mut attacker) = log_of_twenty().await;
    // The attacker wipes the log and has the service append it again without one event:
    // a new, self-consistent tree that the service even signs.
    let originals = h
        .client("org:privacy-portal")
        .query_events({
            let mut request = tonic::Request::new(cpis_proto::audit::QueryEventsRequest {
                page_size: 100,
                end_time: Some(prost_types::Timestamp {
                    seconds: 1_900_000_000,
                    nanos: 0,
                }),
                action: "attendance.check".into(),
                ..Default::default()
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", h.token(&["audit.read"]))
                    .parse()
                    .unwrap(),
            );
            request
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    for table in ["audit_events", "stored_hashes", "checkpoints"] {
        sqlx::query(&format!("TRUNCATE {table}"))
            .execute(&mut attacker)
            .await
            .unwrap();
    }
    let replay: Vec<_> = originals
        .into_iter()
        .filter(|e| e.index != 4)
        .map(|e| e.event.unwrap())
        .collect();
    h.append(replay).await;

    match verifier.latest(Some(&accepted)).await {
        Err(VerifyError::Inconsistent { old: 20, .. } | VerifyError::Shrunk { old: 20, .. }) => {}
        other => panic!("rewritten history not detected: {other:?}"),
    }
    // The new tree is self-consistent, but recomputing it against the earlier checkpoint
    // fails too.
    let latest = verifier.latest(None).await.unwrap();
    assert_eq!(
        verifier.full(&latest, None).await.unwrap(),
        latest.checkpoint.size()
    );
    assert!(verifier.full(&latest, Some(&accepted)).await.is_err());
}
