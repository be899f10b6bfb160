//! Sign-in limits kept in a real Redis (`CPIS_TEST_REDIS_URL`) are shared by every replica:
//! failures at one lock the username out at another, until the lockout ends.

mod support;

use std::time::Duration;

use cpis_mesh::metrics::Metrics;
use cpis_mesh::{Config, MeshContext, Shutdown};
use cpis_proto::identity::IssueTokenRequest;
use support::{Backend, PASSWORD, TestIdentity, redis_url, section, unique_prefix};
use tonic::Code;

async fn a_lockout_is_shared_by_replicas_through_redis(backend: Backend) {
    let prefix = unique_prefix();
    let adjust = |config: &mut Config<cpis_identity::IdentitySection>| {
        config.service.redis_url = Some(redis_url());
        config.service.redis_key_prefix = prefix.clone();
    };
    let first = TestIdentity::start_with(backend, adjust).await;
    // A second replica: same database, same Redis prefix, its own port.
    let mut config = Config {
        mesh: first.pki.mesh_config("identity"),
        service: section(&first.database.url),
    };
    adjust(&mut config);
    let ctx = MeshContext::new(config.mesh.clone(), Metrics::new(), Shutdown::new()).unwrap();
    let (parts, _) = cpis_identity::build(&ctx, &config).await.unwrap();
    let second = cpis_mesh::start(&ctx, parts).await.unwrap();
    let second_client = {
        let channel = cpis_mesh::client::channel(
            &format!("https://localhost:{}", second.addr.port()),
            &first.pki.tls(&first.pki.org_system("RJ1", "ehr")),
            &Metrics::new(),
            &Default::default(),
        )
        .unwrap();
        cpis_proto::identity::identity_service_client::IdentityServiceClient::new(channel)
    };
    let request = |credential: &str| IssueTokenRequest {
        username: "nurse.jones".into(),
        credential: credential.into(),
        role_profile_id: String::new(),
    };
    for _ in 0..3 {
        let status = first
            .org_client("RJ1", "ehr")
            .issue_token(request("guess"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = second_client
        .clone()
        .issue_token(request(PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    second_client
        .clone()
        .issue_token(request(PASSWORD))
        .await
        .unwrap();
    ctx.shutdown.trigger();
}

both_stores!(a_lockout_is_shared_by_replicas_through_redis);
