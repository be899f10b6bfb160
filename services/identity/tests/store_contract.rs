//! The store contract: the same expectations of the Postgres and the SQLite store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_domain::{OdsCode, PersonStatus};
use cpis_identity::audit::AuditActor;
use cpis_identity::credential::CredentialHasher;
use cpis_identity::directory::import::{export_directory, import_directory};
use cpis_identity::directory::{RoleProfile, Status, User};
use cpis_identity::keys::{KeyEncryption, KeyPolicy, KeyRing};
use cpis_identity::persons::synthetic;
use cpis_identity::store::{IdentityStore, Page, StoreError, open};
use support::{Backend, DIRECTORY, KEK, TestDatabase};
use time::OffsetDateTime;

async fn store(backend: Backend) -> (Arc<dyn IdentityStore>, TestDatabase) {
    let database = TestDatabase::new(backend).await;
    // Opening twice migrates once: a second replica starting finds nothing to do.
    open(&database.url).await.unwrap();
    (open(&database.url).await.unwrap(), database)
}

fn policy(rotation: Duration) -> KeyPolicy {
    KeyPolicy {
        rotation_period: rotation,
        verify_window: Duration::from_secs(60),
    }
}

async fn keys_rotate_on_schedule_and_replicas_adopt_the_winner(backend: Backend) {
    let (store, _db) = store(backend).await;
    let kek = || KeyEncryption::from_hex(KEK).unwrap();
    let first = KeyRing::load(store.clone(), kek(), policy(Duration::from_secs(3600)))
        .await
        .unwrap();
    let second = KeyRing::load(store.clone(), kek(), policy(Duration::from_secs(3600)))
        .await
        .unwrap();
    let kid = |ring: &KeyRing| ring.signer().verification_key().key_id;
    assert_eq!(
        kid(&first),
        kid(&second),
        "the second replica adopts the first key"
    );
    first.rotate_now().await.unwrap();
    assert_ne!(kid(&first), kid(&second));
    second.refresh().await.unwrap();
    assert_eq!(kid(&first), kid(&second));
    let stored = store.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored[0].retire_time.is_some() && stored[1].retire_time.is_none());
    // A generation that exists already is not added twice.
    assert!(!store.add_signing_key(&stored[1]).await.unwrap());
    // A key past its rotation period is replaced at the next refresh.
    let hasty = KeyRing::load(store.clone(), kek(), policy(Duration::from_millis(50)))
        .await
        .unwrap();
    let before = kid(&hasty);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hasty.refresh().await.unwrap();
    assert_ne!(kid(&hasty), before);
    let published = hasty.published(OffsetDateTime::now_utc());
    assert_eq!(published.iter().filter(|k| k.current).count(), 1);
    assert!(published.len() >= 3, "{published:?}");
}

async fn the_directory_imports_idempotently_and_exports_what_it_imports(backend: Backend) {
    let (store, _db) = store(backend).await;
    let hasher = CredentialHasher::new().unwrap();
    let actor = AuditActor::tool("contract");
    let run = |validate_only| {
        import_directory(
            store.as_ref(),
            &hasher,
            12,
            DIRECTORY,
            validate_only,
            &actor,
        )
    };
    let dry = run(true).await.unwrap();
    assert_eq!((dry.created, dry.updated, dry.unchanged), (12, 0, 0));
    assert!(
        store
            .users(
                None,
                Page {
                    after: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    let first = run(false).await.unwrap();
    assert_eq!((first.created, first.updated, first.unchanged), (12, 0, 0));
    let second = run(false).await.unwrap();
    assert_eq!(
        (second.created, second.updated, second.unchanged),
        (0, 0, 12)
    );
    let exported = export_directory(store.as_ref()).await.unwrap();
    let third = import_directory(store.as_ref(), &hasher, 12, &exported, false, &actor)
        .await
        .unwrap();
    assert_eq!((third.created, third.updated), (0, 0));
    assert_eq!(export_directory(store.as_ref()).await.unwrap(), exported);
    let org = store
        .organisation(&"RJ1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.care_settings.len(), 2);
    assert_eq!(store.roles().await.unwrap().len(), 6);
}

async fn users_and_profiles_keep_their_rules(backend: Backend) {
    let (store, _db) = store(backend).await;
    let hasher = CredentialHasher::new().unwrap();
    import_directory(
        store.as_ref(),
        &hasher,
        12,
        DIRECTORY,
        false,
        &AuditActor::tool("t"),
    )
    .await
    .unwrap();
    let now = OffsetDateTime::now_utc();
    let user = User {
        user_id: "u-new".into(),
        username: "nurse.jones".into(),
        display_name: "Clash".into(),
        status: Status::Active,
        credential_hash: hasher.hash("whatever whatever").unwrap(),
        create_time: now,
    };
    assert!(matches!(
        store.create_user(&user, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let user = User {
        username: "new.user".into(),
        ..user
    };
    store.create_user(&user, &[]).await.unwrap();
    let rj1: OdsCode = "RJ1".parse().unwrap();
    let profile = RoleProfile {
        role_profile_id: "rp-new".into(),
        user_id: "u-new".into(),
        organisation: rj1.clone(),
        role: "clinician".into(),
        status: Status::Active,
        create_time: now,
    };
    store.create_role_profile(&profile, &[]).await.unwrap();
    let twin = RoleProfile {
        role_profile_id: "rp-twin".into(),
        ..profile.clone()
    };
    assert!(matches!(
        store.create_role_profile(&twin, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let stranger = RoleProfile {
        role_profile_id: "rp-x".into(),
        organisation: "XYZ99".parse().unwrap(),
        ..profile.clone()
    };
    assert!(matches!(
        store.create_role_profile(&stranger, &[]).await,
        Err(StoreError::MissingReference(_))
    ));
    // Once disabled, the same role may be given again.
    let disabled = store
        .set_role_profile_status("rp-new", Status::Disabled, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.status, Status::Disabled);
    store.create_role_profile(&twin, &[]).await.unwrap();
    assert_eq!(
        store
            .role_profiles_of(&["u-new".into()])
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .set_user_status("nobody", Status::Disabled, &[])
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .set_user_status("u-new", Status::Disabled, &[])
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Disabled
    );
    let at_rj1 = store
        .users(
            Some(&rj1),
            Page {
                after: Some("multi.role"),
                limit: 10,
            },
        )
        .await
        .unwrap();
    let names: Vec<_> = at_rj1.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["new.user", "nurse.jones"]);
    store.record_sign_in(Some("u-new"), now, &[]).await.unwrap();
}

async fn persons_upsert_with_counts(backend: Backend) {
    let (store, _db) = store(backend).await;
    let actor = AuditActor::tool("contract");
    let persons = synthetic(0, 2500).unwrap();
    let counts = cpis_identity::persons::import(store.as_ref(), &actor, &persons)
        .await
        .unwrap();
    assert_eq!(
        (counts.created, counts.updated, counts.unchanged),
        (2500, 0, 0)
    );
    let mut changed = persons[..10].to_vec();
    changed[0].sensitive = !changed[0].sensitive;
    changed[1].status = PersonStatus::Inactive;
    // Listed twice in one batch: the last wins, counted once.
    changed.push(changed[2].clone());
    let counts = cpis_identity::persons::import(store.as_ref(), &actor, &changed)
        .await
        .unwrap();
    assert_eq!(
        (counts.created, counts.updated, counts.unchanged),
        (0, 2, 8)
    );
    let numbers: Vec<_> = persons.iter().map(|p| p.nhs_number).collect();
    let found = store.persons(&numbers).await.unwrap();
    assert_eq!(found.len(), 2500);
    let first = found
        .iter()
        .find(|p| p.nhs_number == persons[0].nhs_number)
        .unwrap();
    assert_eq!(first.sensitive, !persons[0].sensitive);
    assert_eq!(first.date_of_birth, persons[0].date_of_birth);
    let superseded = found
        .iter()
        .find(|p| matches!(p.status, PersonStatus::Superseded { .. }));
    assert!(superseded.is_some(), "the register keeps replacements");
}

both_stores!(
    keys_rotate_on_schedule_and_replicas_adopt_the_winner,
    the_directory_imports_idempotently_and_exports_what_it_imports,
    users_and_profiles_keep_their_rules,
    persons_upsert_with_counts,
);
