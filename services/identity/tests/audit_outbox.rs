//! Audit events through the transactional outbox, against Postgres and SQLite: a sign-in
//! writes its event in the same transaction as its change, traces and directory changes are
//! audited, and the relay ships the events to an audit service over mTLS.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpis_mesh::authz::PeerClass;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::{MeshContext, ServiceParts, Shutdown};
use cpis_proto::audit::audit_service_server::{AuditService, AuditServiceServer};
use cpis_proto::audit::{self as pb, AuditEvent, AuditOutcome, actor};
use cpis_proto::identity::{IssueTokenRequest, PersonTraceQuery, TracePeopleRequest};
use prost::Message;
use support::{Backend, PASSWORD, TestIdentity, eventually};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

/// The audit events waiting in identity's outbox, oldest first.
async fn outbox(test: &TestIdentity) -> Vec<AuditEvent> {
    let rows: Vec<(String, Vec<u8>)> = match test.handle.state.store.database() {
        cpis_mesh::db::Database::Postgres(pool) => {
            sqlx::query_as("SELECT destination, payload FROM outbox ORDER BY seq")
                .fetch_all(pool)
                .await
                .unwrap()
        }
        cpis_mesh::db::Database::Sqlite(pool) => {
            sqlx::query_as("SELECT destination, payload FROM outbox ORDER BY seq")
                .fetch_all(pool)
                .await
                .unwrap()
        }
    };
    rows.into_iter()
        .map(|(destination, payload)| {
            assert_eq!(destination, "audit");
            AuditEvent::decode(payload.as_slice()).unwrap()
        })
        .collect()
}

async fn last_sign_in(test: &TestIdentity, user_id: &str) -> bool {
    let sql = "SELECT last_sign_in_time IS NOT NULL FROM users WHERE user_id = $1";
    match test.handle.state.store.database() {
        cpis_mesh::db::Database::Postgres(pool) => sqlx::query_scalar(sql)
            .bind(user_id)
            .fetch_one(pool)
            .await
            .unwrap(),
        cpis_mesh::db::Database::Sqlite(pool) => sqlx::query_scalar(sql)
            .bind(user_id)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

fn actions<'a>(events: &'a [AuditEvent], action: &str) -> Vec<&'a AuditEvent> {
    events.iter().filter(|e| e.action == action).collect()
}

async fn a_sign_in_writes_its_audit_event_in_the_same_transaction(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    // The directory imported at start is audited entry by entry.
    assert_eq!(
        actions(&outbox(&test).await, "identity.directory.import").len(),
        12
    );
    assert!(!last_sign_in(&test, "u-nurse").await);
    test.sign_in("nurse.jones", "").await;
    assert!(last_sign_in(&test, "u-nurse").await);
    let events = outbox(&test).await;
    let signed_in = actions(&events, "identity.sign_in");
    assert_eq!(signed_in.len(), 1);
    let event = signed_in[0];
    assert_eq!(event.outcome, AuditOutcome::Success as i32);
    let actor = event.actor.as_ref().unwrap();
    assert_eq!(
        actor.calling_system,
        "spiffe://cpis.local/org/RJ1/system/ehr"
    );
    let Some(actor::Kind::User(user)) = &actor.kind else {
        panic!("the actor is the user: {actor:?}")
    };
    assert_eq!(user.user_id, "u-nurse");
    assert_eq!(event.organisation.as_ref().unwrap().value, "RJ1");
    assert!(uuid::Uuid::parse_str(&event.event_id).is_ok());

    // A failure is audited too, with no user as actor and no hint of the credential.
    let mut ehr = test.org_client("RJ1", "ehr");
    ehr.issue_token(IssueTokenRequest {
        username: "nurse.jones".into(),
        credential: "hunter2 guess".into(),
        role_profile_id: String::new(),
    })
    .await
    .unwrap_err();
    let events = outbox(&test).await;
    let failed = actions(&events, "identity.sign_in")[1];
    assert_eq!(failed.outcome, AuditOutcome::Denied as i32);
    assert!(failed.actor.as_ref().unwrap().kind.is_none());
    assert!(!format!("{failed:?}").contains("hunter2"));

    // The change and its event commit together or not at all: an event the outbox refuses
    // (its id is no UUID) rolls the sign-in time back.
    let store = &test.handle.state.store;
    let bad = AuditEvent {
        event_id: "not-a-uuid".into(),
        action: "identity.sign_in".into(),
        ..AuditEvent::default()
    };
    assert!(
        store
            .record_sign_in(Some("u-admin"), OffsetDateTime::now_utc(), &[bad])
            .await
            .is_err()
    );
    assert!(!last_sign_in(&test, "u-admin").await);
    assert_eq!(outbox(&test).await.len(), events.len());
}

async fn traces_are_audited_per_person(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let numbers = ["9434765919", "9434765870", "123"];
    let queries = numbers
        .iter()
        .map(|n| PersonTraceQuery {
            nhs_number: Some(cpis_proto::common::NhsNumber { value: (*n).into() }),
            date_of_birth: None,
        })
        .collect();
    test.service_client("flag-registry")
        .trace_people(TracePeopleRequest { queries })
        .await
        .unwrap();
    let events = outbox(&test).await;
    let traced = actions(&events, "identity.trace_person");
    // One per valid number; the invalid one was never looked up.
    assert_eq!(traced.len(), 2);
    assert_eq!(traced[0].nhs_number.as_ref().unwrap().value, numbers[0]);
    assert_eq!(traced[0].reason, "no match");
    let Some(actor::Kind::Workload(workload)) = &traced[0].actor.as_ref().unwrap().kind else {
        panic!("the flag registry traced")
    };
    assert_eq!(workload, "spiffe://cpis.local/ns/cpis/sa/flag-registry");
}

/// An audit service that keeps what it is sent.
#[derive(Debug, Clone, Default)]
struct FakeAudit(Arc<Mutex<Vec<AuditEvent>>>);

#[tonic::async_trait]
impl AuditService for FakeAudit {
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let events = request.into_inner().events;
        let results = events
            .iter()
            .map(|e| pb::AppendResult {
                event_id: e.event_id.clone(),
                ..Default::default()
            })
            .collect();
        self.0.lock().unwrap().extend(events);
        Ok(Response::new(pb::AppendResponse { results }))
    }

    async fn query_events(
        &self,
        _: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<pb::QueryEventsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_consistency_proof(
        &self,
        _: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

async fn the_relay_ships_audit_events_to_the_audit_service(backend: Backend) {
    let received = FakeAudit::default();
    // The first instance has no relay; the fake audit service uses its PKI.
    let test = TestIdentity::start(backend).await;
    let audit_config = test.pki.mesh_config("audit");
    let ctx = MeshContext::new(audit_config, Metrics::new(), Shutdown::new()).unwrap();
    let parts = ServiceParts {
        workload: "audit",
        routes: tonic::service::Routes::new(AuditServiceServer::new(received.clone())),
        service_names: vec!["cpis.audit.v1.AuditService"],
        policy: ctx
            .policy()
            .allow_method("cpis.audit.v1.AuditService/Append", [PeerClass::AnyService]),
        checks: Vec::new(),
    };
    let audit = cpis_mesh::start(&ctx, parts).await.unwrap();
    // A replica of identity on the same database, with the relay pointed at the fake.
    let mut config = cpis_mesh::Config {
        mesh: test.pki.mesh_config("identity"),
        service: support::section(&test.database.url),
    };
    config.service.audit_address = format!("https://localhost:{}", audit.addr.port());
    let identity_ctx =
        MeshContext::new(config.mesh.clone(), Metrics::new(), Shutdown::new()).unwrap();
    let (parts, _) = cpis_identity::build(&identity_ctx, &config).await.unwrap();
    let replica = cpis_mesh::start(&identity_ctx, parts).await.unwrap();
    let channel = cpis_mesh::client::channel(
        &format!("https://localhost:{}", replica.addr.port()),
        &test.pki.tls(&test.pki.org_system("RJ1", "ehr")),
        &Metrics::new(),
        &Default::default(),
    )
    .unwrap();
    cpis_proto::identity::identity_service_client::IdentityServiceClient::new(channel)
        .issue_token(IssueTokenRequest {
            username: "admin.lee".into(),
            credential: PASSWORD.into(),
            role_profile_id: String::new(),
        })
        .await
        .unwrap();
    let shipped = eventually(Duration::from_secs(10), || async {
        received
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.action == "identity.sign_in")
    })
    .await;
    assert!(
        shipped,
        "the sign-in's event did not reach the audit service"
    );
    // Confirmed events leave the outbox (the 12 of the directory import went too).
    let drained = eventually(Duration::from_secs(10), || async {
        outbox(&test).await.is_empty()
    })
    .await;
    assert!(drained);
    assert_eq!(received.0.lock().unwrap().len(), 13);
    identity_ctx.shutdown.trigger();
    ctx.shutdown.trigger();
}

both_stores!(
    a_sign_in_writes_its_audit_event_in_the_same_transaction,
    traces_are_audited_per_person,
    the_relay_ships_audit_events_to_the_audit_service,
);
