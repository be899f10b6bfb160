//! The audit log's contract, run against Postgres and SQLite: appends, proofs, idempotency,
//! sequencing under concurrency, queries, and the database refusing changes.

mod support;

use std::collections::BTreeSet;

use cpis_audit::verify::Verifier;
use cpis_merkle::{Hash, check_record, check_tree, leaf_hash};
use cpis_mesh::client::MeshChannel;
use cpis_mesh::testkit::{postgres_database, sqlite_database};
use cpis_proto::audit::audit_service_client::AuditServiceClient;
use cpis_proto::audit::{
    AppendRequest, AuditOutcome, GetCheckpointRequest, GetConsistencyProofRequest,
    GetInclusionProofRequest, QueryEventsRequest, get_inclusion_proof_request,
};
use cpis_proto::common::NhsNumber;
use support::{CHILD, checkpoint_key, event, events};
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
                super::$case(&cpis_mesh::testkit::sqlite_database(dir.path(), "audit")).await;
            }
        }
    )*};
}

on_both_stores!(
    appended_events_are_provable_against_signed_checkpoints,
    a_resent_event_is_acknowledged_not_appended_again,
    invalid_events_are_refused_naming_each_field,
    concurrent_appends_get_consecutive_indexes,
    queries_need_audit_read_and_are_themselves_audited,
    the_database_refuses_to_change_or_delete_events,
    a_forged_proof_or_checkpoint_is_rejected,
    full_verification_of_an_untouched_log_passes,
    requests_sign_checkpoints_at_most_one_per_gap,
);

fn hash(bytes: &[u8]) -> Hash {
    Hash::from_slice(bytes).unwrap()
}

async fn appended_events_are_provable_against_signed_checkpoints(db: &str) {
    let h = support::start(db, None).await;
    let results = h.append(events(7)).await;
    let indexes: Vec<i64> = results.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..7).collect::<Vec<_>>());

    let mut client = h.client("org:privacy-portal");
    let first = client
        .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    let opened = cpis_merkle::checkpoint::open(&first.signed_note, &checkpoint_key()).unwrap();
    assert_eq!(opened.size(), 7);
    assert_eq!(
        opened.root().as_bytes().as_slice(),
        first.root_hash.as_slice()
    );
    assert_eq!(first.signatures.len(), 1);

    for index in 0..7 {
        let proof = client
            .get_inclusion_proof(GetInclusionProofRequest {
                leaf: Some(get_inclusion_proof_request::Leaf::Index(index)),
                tree_size: 7,
            })
            .await
            .unwrap()
            .into_inner();
        let path: Vec<Hash> = proof.hashes.iter().map(|b| hash(b)).collect();
        check_record(
            &path,
            7,
            opened.root(),
            index as u64,
            hash(&proof.leaf_hash),
        )
        .unwrap();
    }
    // By event id, too.
    let by_id = client
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(get_inclusion_proof_request::Leaf::EventId(
                results[3].event_id.clone(),
            )),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.index, 3);

    // The log grows; the new checkpoint proves it only grew.
    h.append(events(5)).await;
    let second = client
        .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    let reopened = cpis_merkle::checkpoint::open(&second.signed_note, &checkpoint_key()).unwrap();
    assert_eq!(reopened.size(), 12);
    let consistency = client
        .get_consistency_proof(GetConsistencyProofRequest {
            first_tree_size: 7,
            second_tree_size: 12,
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<Hash> = consistency.hashes.iter().map(|b| hash(b)).collect();
    check_tree(&path, 12, reopened.root(), 7, opened.root()).unwrap();
    // Every checkpoint is kept.
    let again = client
        .get_checkpoint(GetCheckpointRequest { tree_size: 7 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    assert_eq!(again.signed_note, first.signed_note);
    let missing = client
        .get_checkpoint(GetCheckpointRequest { tree_size: 5 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn a_resent_event_is_acknowledged_not_appended_again(db: &str) {
    let h = support::start(db, None).await;
    let batch = events(3);
    let first = h.append(batch.clone()).await;
    assert!(first.iter().all(|r| !r.duplicate));
    // The whole batch again, and one event twice within a batch.
    let mut again = batch.clone();
    again.push(event(9));
    again.push(again[3].clone());
    let second = h.append(again).await;
    assert_eq!(
        second.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        [true, true, true, false, true]
    );
    assert_eq!(second[0].index, first[0].index);
    assert_eq!(second[3].index, 3);
    assert_eq!(second[4].index, 3);
    let size = h
        .client("attendance")
        .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .tree_size;
    assert_eq!(size, 4);
}

async fn invalid_events_are_refused_naming_each_field(db: &str) {
    let h = support::start(db, None).await;
    let mut bad = events(2);
    bad[1].event_id = "not-a-uuid".into();
    bad[1].action = "Attendance Check".into();
    bad[0].nhs_number = Some(NhsNumber {
        value: "943 476 5918".into(),
    });
    let status = h
        .client("attendance")
        .append(AppendRequest { events: bad })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: BTreeSet<String> = cpis_mesh::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "events[0].nhs_number",
            "events[1].action",
            "events[1].event_id"
        ]
        .map(String::from)
        .into()
    );
    // Nothing was half-written.
    let size = h
        .client("attendance")
        .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .tree_size;
    assert_eq!(size, 0);
    // Only mesh services may append.
    let status = h
        .client("org:ehr")
        .append(AppendRequest { events: events(1) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn concurrent_appends_get_consecutive_indexes(db: &str) {
    let h = support::start(db, None).await;
    // A second instance on the same database where the store allows it (Postgres: replicas
    // share the sequencer; SQLite belongs to one process).
    let second = if db.starts_with("postgres") {
        Some(support::start(db, None).await)
    } else {
        None
    };
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let client = match (&second, task % 2) {
            (Some(other), 1) => other.client("attendance"),
            _ => h.client("attendance"),
        };
        tasks.push(tokio::spawn(async move {
            let mut client = client;
            let mut got = Vec::new();
            for _ in 0..10 {
                let batch = (0..5).map(|i| event(task * 100 + i)).collect();
                let results = client
                    .append(AppendRequest { events: batch })
                    .await
                    .unwrap()
                    .into_inner()
                    .results;
                got.extend(results.into_iter().map(|r| r.index));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..400).collect::<Vec<i64>>(),
        "indexes must be 0..400 with no gap or repeat"
    );
    // And the tree over them verifies.
    let verifier = Verifier::new(
        h.channel("org:privacy-portal"),
        checkpoint_key(),
        Some(h.token(&["audit.read"])),
    );
    let latest = verifier.latest(None).await.unwrap();
    assert_eq!(verifier.full(&latest, None).await.unwrap(), 400);
}

async fn queries_need_audit_read_and_are_themselves_audited(db: &str) {
    let h = support::start(db, None).await;
    h.append(events(3)).await;
    let mut other = event(7);
    other.nhs_number = None;
    h.append(vec![other]).await;

    let query = |token: Option<String>| {
        let mut request = tonic::Request::new(QueryEventsRequest {
            nhs_number: Some(NhsNumber {
                value: "943 476 5919".into(),
            }),
            ..Default::default()
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };
    let mut portal = h.client("org:privacy-portal");
    assert_eq!(
        portal.query_events(query(None)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let clinician = h.token(&["child.check"]);
    assert_eq!(
        portal
            .query_events(query(Some(clinician)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    let officer = h.token(&["audit.read"]);
    let found = portal
        .query_events(query(Some(officer.clone())))
        .await
        .unwrap()
        .into_inner();
    // The three checks, and the clinician's refused query about the child.
    let actions: Vec<&str> = found
        .entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "attendance.check",
            "attendance.check",
            "attendance.check",
            "audit.query"
        ]
    );
    assert!(
        found
            .entries
            .iter()
            .all(|e| e.event.as_ref().unwrap().nhs_number.as_ref().unwrap().value == CHILD)
    );
    assert!(found.entries.iter().all(|e| e.leaf_data.is_empty()));

    // The query is in the log: who asked, about which child.
    let mut asked = tonic::Request::new(QueryEventsRequest {
        action: "audit.query".into(),
        ..Default::default()
    });
    asked.metadata_mut().insert(
        "authorization",
        format!("Bearer {officer}").parse().unwrap(),
    );
    let queries = portal.query_events(asked).await.unwrap().into_inner();
    assert_eq!(queries.entries.len(), 2, "{queries:?}");
    // The clinician's refused query too, as denied.
    let refused = queries.entries[0].event.clone().unwrap();
    assert_eq!(refused.outcome, AuditOutcome::Denied as i32);
    assert_eq!(refused.nhs_number.unwrap().value, CHILD);
    let recorded = queries.entries[1].event.clone().unwrap();
    assert_eq!(recorded.outcome, AuditOutcome::Success as i32);
    assert_eq!(recorded.nhs_number.unwrap().value, CHILD);
    assert_eq!(recorded.organisation.unwrap().value, "X26");

    // Paging.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let mut request = tonic::Request::new(QueryEventsRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {officer}").parse().unwrap(),
        );
        let page = portal.query_events(request).await.unwrap().into_inner();
        paged.extend(page.entries.iter().map(|e| e.index));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(&paged[..6], &[0, 1, 2, 3, 4, 5]);
}

async fn requests_sign_checkpoints_at_most_one_per_gap(db: &str) {
    let gap = std::time::Duration::from_secs(2);
    let h = support::start_paced(db, gap).await;
    let mut client = h.client("org:privacy-portal");
    h.append(events(3)).await;
    let latest = |mut client: AuditServiceClient<MeshChannel>| async move {
        client
            .get_checkpoint(GetCheckpointRequest { tree_size: 0 })
            .await
            .unwrap()
            .into_inner()
            .checkpoint
            .unwrap()
            .tree_size
    };
    // The first request finds the log grown and signs.
    let started = std::time::Instant::now();
    assert_eq!(latest(client.clone()).await, 3);

    // The log grows; requests within the gap, however many, are answered the latest.
    h.append(events(2)).await;
    let mut asking = tokio::task::JoinSet::new();
    for _ in 0..20 {
        asking.spawn(latest(client.clone()));
    }
    let sizes = asking.join_all().await;
    assert!(sizes.iter().all(|s| *s == 3), "{sizes:?}");
    assert_eq!(
        client
            .get_checkpoint(GetCheckpointRequest { tree_size: 5 })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound,
        "no checkpoint was signed within the gap"
    );

    // A proof of an event the latest does not cover waits for the gap, then one is signed.
    let proof = client
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(get_inclusion_proof_request::Leaf::Index(4)),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.tree_size, 5);
    assert!(started.elapsed() >= gap, "{:?}", started.elapsed());
    let note = proof.checkpoint.unwrap().signed_note;
    let opened = cpis_merkle::checkpoint::open(&note, &checkpoint_key()).unwrap();
    let path: Vec<Hash> = proof.hashes.iter().map(|b| hash(b)).collect();
    check_record(&path, 5, opened.root(), 4, hash(&proof.leaf_hash)).unwrap();
    // A proof the latest covers is answered at once, without a new checkpoint.
    h.append(events(1)).await;
    let covered = client
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(get_inclusion_proof_request::Leaf::Index(1)),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(covered.tree_size, 5);
}

async fn the_database_refuses_to_change_or_delete_events(db: &str) {
    let h = support::start(db, None).await;
    h.append(events(2)).await;
    let database =
        cpis_mesh::db::Database::connect(&cpis_mesh::db::DatabaseSettings::new(&h.db_url))
            .await
            .unwrap();
    for statement in [
        "UPDATE audit_events SET action = 'x' WHERE idx = 0",
        "DELETE FROM audit_events WHERE idx = 1",
        "UPDATE stored_hashes SET hash = hash",
        "DELETE FROM checkpoints",
    ] {
        let refused = match &database {
            cpis_mesh::db::Database::Postgres(pool) => {
                sqlx::query(statement).execute(pool).await.is_err()
            }
            cpis_mesh::db::Database::Sqlite(pool) => {
                sqlx::query(statement).execute(pool).await.is_err()
            }
        };
        assert!(refused, "`{statement}` was allowed");
    }
    if let cpis_mesh::db::Database::Postgres(pool) = &database {
        let error = sqlx::query("TRUNCATE audit_events")
            .execute(pool)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
}

async fn a_forged_proof_or_checkpoint_is_rejected(db: &str) {
    let h = support::start(db, None).await;
    h.append(events(9)).await;
    let proof = h
        .client("attendance")
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(get_inclusion_proof_request::Leaf::Index(4)),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let root =
        cpis_merkle::checkpoint::open(&proof.checkpoint.unwrap().signed_note, &checkpoint_key())
            .unwrap()
            .root();
    let path: Vec<Hash> = proof.hashes.iter().map(|b| hash(b)).collect();
    check_record(&path, 9, root, 4, hash(&proof.leaf_hash)).unwrap();
    for i in 0..path.len() {
        let mut forged = path.clone();
        let mut bytes = *forged[i].as_bytes();
        bytes[0] ^= 1;
        forged[i] = Hash(bytes);
        assert!(check_record(&forged, 9, root, 4, hash(&proof.leaf_hash)).is_err());
    }
    assert!(check_record(&path, 9, root, 5, hash(&proof.leaf_hash)).is_err());
    assert!(check_record(&path, 9, root, 4, leaf_hash(b"another event")).is_err());
    assert!(check_record(&path[1..], 9, root, 4, hash(&proof.leaf_hash)).is_err());

    // A verifier trusting another key refuses the service's checkpoints.
    let stranger = cpis_merkle::CheckpointSigner::from_ed25519_seed("cpis.local/audit", &[7; 32])
        .unwrap()
        .verifier();
    let verifier = Verifier::new(h.channel("org:privacy-portal"), stranger, None);
    assert!(verifier.latest(None).await.is_err());
}

async fn full_verification_of_an_untouched_log_passes(db: &str) {
    let h = support::start(db, None).await;
    h.append(events(30)).await;
    let verifier = Verifier::new(
        h.channel("org:privacy-portal"),
        checkpoint_key(),
        Some(h.token(&["audit.read"])),
    );
    let first = verifier.latest(None).await.unwrap();
    h.append(events(11)).await;
    let second = verifier.latest(Some(&first)).await.unwrap();
    assert_eq!(verifier.full(&second, Some(&first)).await.unwrap(), 41);
    let (index, _) = verifier.prove("17").await.unwrap();
    assert_eq!(index, 17);
}

#[tokio::test]
async fn fixtures_are_real() {
    // Guards the harness itself: both stores really are different databases.
    assert!(postgres_database().await.starts_with("postgres://"));
    assert!(sqlite_database(std::path::Path::new("/tmp"), "x").starts_with("sqlite:"));
}
