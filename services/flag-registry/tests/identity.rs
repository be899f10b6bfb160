//! Traces against the real identity service, in process over mTLS: the person register's
//! answers become upsert and upload outcomes.

mod support;

use std::sync::Arc;

use cpis_domain::{NhsNumber, PersonStatus};
use cpis_flag_registry::demographics::IdentityRegister;
use cpis_identity::IdentitySection;
use cpis_identity::audit::AuditActor;
use cpis_identity::persons::Person;
use cpis_mesh::client::ChannelSettings;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::{Config, MeshContext, RunningServer, Shutdown};
use cpis_proto::common::{LocalAuthority, OdsCode};
use cpis_proto::flags::{
    BulkUploadRequest, RecordOutcome, UploadHeader, UploadMode, UploadOutcome, bulk_upload_request,
};
use support::*;

/// The key encryption key of identity in tests.
const KEK: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

fn person(number: &str, status: PersonStatus, sensitive: bool) -> Person {
    Person {
        nhs_number: NhsNumber::parse(number).unwrap(),
        date_of_birth: date(2015, 6, 1),
        status,
        sensitive,
    }
}

/// Identity on an SQLite file with a small register; its server and PKI.
async fn identity(dir: &std::path::Path) -> (TestPki, RunningServer) {
    let pki = TestPki::new();
    let config = Config {
        mesh: pki.mesh_config("identity"),
        service: IdentitySection {
            database_url: cpis_mesh::testkit::sqlite_database(dir, "identity"),
            key_encryption_key: Some(KEK.to_owned()),
            audit_address: String::new(),
            ..IdentitySection::default()
        },
    };
    let ctx = MeshContext::new(config.mesh.clone(), Metrics::new(), Shutdown::new()).unwrap();
    let (parts, handle) = cpis_identity::build(&ctx, &config).await.unwrap();
    let server = cpis_mesh::start(&ctx, parts).await.unwrap();
    let by = NhsNumber::parse(&nhs(1)).unwrap();
    cpis_identity::persons::import(
        handle.state.store.as_ref(),
        &AuditActor::tool("test"),
        &[
            person(&nhs(1), PersonStatus::Active, false),
            person(&nhs(2), PersonStatus::Active, false),
            person(&sensitive(), PersonStatus::Active, true),
            person(&inactive(), PersonStatus::Inactive, false),
            person(&superseded(), PersonStatus::Superseded { by }, false),
        ],
    )
    .await
    .unwrap();
    (pki, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_traced_against_identitys_person_register() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, server) = identity(dir.path()).await;
    // The registry calls identity as the flag-registry workload, as in the mesh.
    let channel = cpis_mesh::client::channel(
        &format!("https://localhost:{}", server.addr.port()),
        &pki.tls(&pki.workload("flag-registry")),
        &Metrics::new(),
        &ChannelSettings::default(),
    )
    .unwrap();
    let h = start_with(
        &cpis_mesh::testkit::sqlite_database(dir.path(), "flags"),
        Options {
            demographics: Some(Arc::new(IdentityRegister::new(channel))),
            ..Options::default()
        },
    )
    .await;

    let mut wrong_birth = cpp(CAMDEN, "R-6", &nhs(2)).record.unwrap();
    wrong_birth.date_of_birth = Some(wire(2016, 1, 1));
    let mut right_birth = cpp(CAMDEN, "R-7", &nhs(2)).record.unwrap();
    right_birth.date_of_birth = Some(wire(2015, 6, 1));
    let records = vec![
        cpp(CAMDEN, "R-1", &nhs(1)).record.unwrap(),
        cpp(CAMDEN, "R-2", &no_match()).record.unwrap(),
        cpp(CAMDEN, "R-3", &sensitive()).record.unwrap(),
        cpp(CAMDEN, "R-4", &inactive()).record.unwrap(),
        cpp(CAMDEN, "R-5", &superseded()).record.unwrap(),
        wrong_birth,
        right_birth,
    ];
    let mut messages = vec![BulkUploadRequest {
        content: Some(bulk_upload_request::Content::Header(UploadHeader {
            authority: Some(LocalAuthority {
                code: Some(OdsCode {
                    value: CAMDEN.into(),
                }),
                name: "Camden".into(),
            }),
            contacts: Some(contacts()),
            sequence_number: 1,
            record_count: 7,
            mode: UploadMode::Incremental as i32,
            file_name: String::new(),
        })),
    }];
    messages.extend(records.into_iter().map(|r| BulkUploadRequest {
        content: Some(bulk_upload_request::Content::Record(r)),
    }));
    let token = h.manager(CAMDEN);
    let report = h
        .client(&format!("org:{CAMDEN}"))
        .bulk_upload(authed(&token, tokio_stream::iter(messages)))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.outcome, UploadOutcome::Partial as i32);
    let outcomes: Vec<i32> = report.records.iter().map(|r| r.outcome).collect();
    use RecordOutcome::*;
    assert_eq!(
        outcomes,
        [
            Stored as i32,
            NoMatch as i32,
            SensitiveRefused as i32,
            Inactive as i32,
            Superseded as i32,
            NotVerified as i32,
            Stored as i32,
        ]
    );
    assert_eq!(
        report.records[4].superseded_by.as_ref().unwrap().value,
        nhs(1)
    );

    // An upsert is traced the same way.
    let answer = h
        .client(&format!("org:{CAMDEN}"))
        .upsert_flag(authed(&token, cpp(CAMDEN, "U-1", &sensitive())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outcome, SensitiveRefused as i32);
}
