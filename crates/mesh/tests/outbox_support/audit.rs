//! A tiny audit service for the AuditSink tests: `Append` only, idempotent by event id,
//! all or nothing per batch, switchable down; the other RPCs are UNIMPLEMENTED.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cpis_mesh::authz::PeerClass;
use cpis_mesh::client::{ChannelSettings, MeshChannel};
use cpis_mesh::metrics::Metrics;
use cpis_mesh::testkit::TestPki;
use cpis_mesh::{MeshContext, RunningServer, ServiceParts, Shutdown};
use cpis_proto::audit::audit_service_server::{AuditService, AuditServiceServer};
use cpis_proto::audit::{
    AppendRequest, AppendResponse, AppendResult, AuditEvent, GetCheckpointRequest,
    GetCheckpointResponse, GetConsistencyProofRequest, GetConsistencyProofResponse,
    GetInclusionProofRequest, GetInclusionProofResponse, QueryEventsRequest, QueryEventsResponse,
};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

/// The action the test audit service refuses as invalid.
pub const POISON_ACTION: &str = "poison";

#[derive(Debug, Default)]
pub struct AuditLog {
    up: AtomicBool,
    /// Stored events by id, with their index.
    events: Mutex<HashMap<String, (i64, AuditEvent)>>,
    /// Every Append call's size.
    calls: Mutex<Vec<usize>>,
}

impl AuditLog {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn stored(&self) -> HashMap<String, AuditEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(id, (_, event))| (id.clone(), event.clone()))
            .collect()
    }

    pub fn calls(&self) -> Vec<usize> {
        self.calls.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone)]
struct TestAudit(Arc<AuditLog>);

#[tonic::async_trait]
impl AuditService for TestAudit {
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let events = request.into_inner().events;
        self.0.calls.lock().unwrap().push(events.len());
        if !self.0.up.load(Ordering::SeqCst) {
            return Err(Status::unavailable("audit is restarting"));
        }
        if let Some(bad) = events.iter().position(|e| e.action == POISON_ACTION) {
            return Err(Status::invalid_argument(format!(
                "events[{bad}].action: unknown action"
            )));
        }
        let mut stored = self.0.events.lock().unwrap();
        let results = events
            .into_iter()
            .map(|event| {
                let next = i64::try_from(stored.len()).unwrap();
                let id = event.event_id.clone();
                let duplicate = stored.contains_key(&id);
                let (index, _) = stored.entry(id.clone()).or_insert((next, event));
                AppendResult {
                    event_id: id,
                    index: *index,
                    duplicate,
                }
            })
            .collect();
        Ok(Response::new(AppendResponse { results }))
    }

    async fn query_events(
        &self,
        _: Request<QueryEventsRequest>,
    ) -> Result<Response<QueryEventsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_consistency_proof(
        &self,
        _: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// The test audit service, running on mTLS.
pub struct AuditServer {
    pub server: RunningServer,
    pub ctx: MeshContext,
    pub log: Arc<AuditLog>,
}

impl AuditServer {
    /// Starts it as workload `audit`; only mesh services may call `Append`.
    pub async fn start(pki: &TestPki) -> Self {
        let ctx = MeshContext::new(pki.mesh_config("audit"), Metrics::new(), Shutdown::new())
            .expect("context");
        let log = Arc::new(AuditLog::default());
        let parts = ServiceParts {
            workload: "audit",
            routes: Routes::new(AuditServiceServer::new(TestAudit(log.clone()))),
            service_names: vec!["cpis.audit.v1.AuditService"],
            policy: ctx
                .policy()
                .allow_method("cpis.audit.v1.AuditService/Append", [PeerClass::AnyService]),
            checks: Vec::new(),
        };
        let server = cpis_mesh::start(&ctx, parts).await.expect("server starts");
        Self { server, ctx, log }
    }

    pub async fn stop(self) {
        self.ctx.shutdown.trigger();
        self.server.wait().await.unwrap();
    }
}

/// A channel of the `attendance` workload to `localhost:port`.
pub fn attendance_channel(pki: &TestPki, port: u16) -> MeshChannel {
    cpis_mesh::client::channel(
        &format!("https://localhost:{port}"),
        &pki.tls(&pki.workload("attendance")),
        &Metrics::new(),
        &ChannelSettings::default(),
    )
    .expect("channel")
}
