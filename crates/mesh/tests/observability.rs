//! What operators and callers see of a call, over real sockets: trace context and exported
//! spans, metrics, health through shutdown and dependency failures, deadlines, and errors
//! with field violations.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::config::TelemetrySection;
use cpis_mesh::duration::HumanDuration;
use cpis_mesh::error::field_violations;
use cpis_mesh::telemetry::{SpanExport, init_with};
use cpis_mesh::testkit::{OtlpReceiver, TestPki};
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use support::{SERVICE, SLOW_SITE, Switch, VALID_NHS_NUMBER, check, client, eventually};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_trace_continues_on_the_server_and_reaches_the_collector() {
    let receiver = OtlpReceiver::start().await;
    let telemetry = init_with(
        "attendance",
        &TelemetrySection {
            log_format: cpis_mesh::config::LogFormat::Json,
            log_filter: "info".to_owned(),
        },
        SpanExport::Otlp(receiver.endpoint()),
    )
    .expect("telemetry");
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");

    // 1. A caller's own traceparent, sent on a bare channel, arrives and is continued.
    let raw = cpis_mesh::client::raw_channel(
        format!("https://localhost:{}", test.server.addr.port())
            .parse()
            .unwrap(),
        &pki.tls(&ehr),
        "localhost".try_into().unwrap(),
        &Default::default(),
    );
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let mut request = tonic::Request::new(check(VALID_NHS_NUMBER));
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    AttendanceServiceClient::new(raw)
        .record_attendance(request)
        .await
        .expect("call");
    assert_eq!(
        test.observed.last().traceparent.as_deref(),
        Some(traceparent.as_str())
    );

    // 2. A call through the mesh's own client: its client span is the server span's parent.
    client(&pki, &ehr, test.server.addr.port())
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .expect("call");

    telemetry.flush();
    let method = format!("{SERVICE}/RecordAttendance");
    let server_span = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.name == method && s.trace_id == TRACE_ID
        })
        .await
        .expect("the server span of the caller's trace was exported");
    assert_eq!(server_span.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(server_span.service_name, "attendance");
    assert_eq!(server_span.attributes["rpc.system"], "grpc");
    assert_eq!(server_span.attributes["rpc.service"], SERVICE);
    assert_eq!(server_span.attributes["rpc.method"], "RecordAttendance");
    assert_eq!(server_span.attributes["rpc.grpc.status_code"], "0");
    assert_eq!(server_span.attributes["peer"], "org:RJ1/ed-ehr");

    let client_span = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.name == method && s.trace_id != TRACE_ID && s.parent_span_id.is_empty()
        })
        .await
        .expect("the mesh client's span was exported");
    let child = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.name == method
                && s.trace_id == client_span.trace_id
                && s.parent_span_id == client_span.span_id
        })
        .await
        .expect("the server span is a child of the client span");
    assert_eq!(child.attributes["rpc.grpc.status_code"], "0");
    telemetry.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_counts_calls_by_method_and_code() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let mut ehr = client(&pki, &ehr, test.server.addr.port());
    ehr.record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap();
    ehr.record_attendance(check("123")).await.unwrap_err();

    let text = support::scrape(test.server.admin_addr).await;
    let labels = format!("service=\"{SERVICE}\",method=\"RecordAttendance\"");
    assert!(
        text.contains(&format!(
            "cpis_rpc_server_requests_total{{{labels},code=\"OK\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "cpis_rpc_server_errors_total{{{labels},code=\"INVALID_ARGUMENT\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "cpis_rpc_server_duration_seconds_count{{{labels}}} 2"
        )),
        "{text}"
    );
    // Nothing personal in the labels.
    assert!(!text.contains("9434765919"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_nhs_number_is_invalid_argument_naming_the_field() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let status = client(&pki, &ehr, test.server.addr.port())
        .record_attendance(check("943 476 5918"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = field_violations(&status);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "nhs_number");
    assert!(
        violations[0].description.contains("check digit"),
        "{violations:?}"
    );
}

fn slow_check() -> cpis_proto::attendance::RecordAttendanceRequest {
    let mut slow = check(VALID_NHS_NUMBER);
    slow.care_setting.as_mut().unwrap().site = SLOW_SITE.to_owned();
    slow
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_the_deadline_its_client_set_is_deadline_exceeded() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let mut request = tonic::Request::new(slow_check());
    request.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = client(&pki, &ehr, test.server.addr.port())
        .record_attendance(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "nobody enforced the deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_caps_every_call_at_its_maximum_deadline() {
    let pki = TestPki::new();
    let mut config = pki.mesh_config("attendance");
    config.server.max_deadline = HumanDuration::from_millis(200);
    let test = support::start_with(config, Vec::new()).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");
    // A bare channel sending no deadline: only the server can end the call.
    let raw = cpis_mesh::client::raw_channel(
        format!("https://localhost:{}", test.server.addr.port())
            .parse()
            .unwrap(),
        &pki.tls(&ehr),
        "localhost".try_into().unwrap(),
        &Default::default(),
    );
    let started = std::time::Instant::now();
    let status = AttendanceServiceClient::new(raw)
        .record_attendance(slow_check())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the server waited for the handler"
    );
    let text = support::scrape(test.server.admin_addr).await;
    assert!(
        text.contains(&format!(
            "cpis_rpc_server_requests_total{{service=\"{SERVICE}\",method=\"RecordAttendance\",code=\"DEADLINE_EXCEEDED\"}} 1"
        )),
        "{text}"
    );
}

async fn status_of(channel: tonic::transport::Channel, service: &str) -> Option<ServingStatus> {
    let mut health = HealthClient::new(channel);
    let answer = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

fn admin_channel(admin: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{admin}"))
        .unwrap()
        .connect_lazy()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_serving_then_not_serving_on_shutdown() {
    let pki = TestPki::new();
    let mut config = pki.mesh_config("attendance");
    // Long enough to watch NOT_SERVING before the port stops accepting.
    config.server.shutdown_delay = HumanDuration::from_millis(1500);
    let test = support::start_with(config, Vec::new()).await;
    let admin = admin_channel(test.server.admin_addr);

    let serving = eventually(Duration::from_secs(5), || {
        let admin = admin.clone();
        async move { status_of(admin, "").await == Some(ServingStatus::Serving) }
    })
    .await;
    assert!(serving, "never SERVING");
    assert_eq!(
        status_of(admin.clone(), SERVICE).await,
        Some(ServingStatus::Serving)
    );

    // The same health is served on the mTLS port to any peer with a valid certificate.
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let mtls = cpis_mesh::client::raw_channel(
        format!("https://localhost:{}", test.server.addr.port())
            .parse()
            .unwrap(),
        &pki.tls(&ehr),
        "localhost".try_into().unwrap(),
        &Default::default(),
    );
    assert_eq!(status_of(mtls, SERVICE).await, Some(ServingStatus::Serving));

    test.ctx.shutdown.trigger();
    let not_serving = eventually(Duration::from_secs(1), || {
        let admin = admin.clone();
        async move { status_of(admin, "").await == Some(ServingStatus::NotServing) }
    })
    .await;
    assert!(not_serving, "still SERVING after shutdown began");

    tokio::time::timeout(Duration::from_secs(10), test.server.wait())
        .await
        .expect("the server drains and stops")
        .expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_follows_the_dependency_checks() {
    let pki = TestPki::new();
    let database = Switch::new(false);
    let test = support::start_with(
        pki.mesh_config("attendance"),
        vec![Arc::new(database.clone())],
    )
    .await;
    let admin = admin_channel(test.server.admin_addr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_of(admin.clone(), SERVICE).await,
        Some(ServingStatus::NotServing)
    );

    database.set(true);
    assert!(
        eventually(Duration::from_secs(5), || {
            let admin = admin.clone();
            async move { status_of(admin, SERVICE).await == Some(ServingStatus::Serving) }
        })
        .await,
        "SERVING once the dependency answers"
    );

    database.set(false);
    assert!(
        eventually(Duration::from_secs(5), || {
            let admin = admin.clone();
            async move { status_of(admin, SERVICE).await == Some(ServingStatus::NotServing) }
        })
        .await,
        "NOT_SERVING when the dependency fails"
    );
}

/// The services a reflection endpoint lists, asked with the given protocol.
macro_rules! listed_services {
    ($pb:path, $channel:expr) => {{
        use $pb as pb;
        let mut client = pb::server_reflection_client::ServerReflectionClient::new($channel);
        let request = pb::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(pb::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .expect("reflection answers")
            .into_inner();
        let answer = answers.message().await.unwrap().expect("one answer");
        match answer.message_response {
            Some(pb::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                names.sort();
                names
            }
            other => panic!("unexpected reflection answer: {other:?}"),
        }
    }};
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_v1_and_v1alpha_list_only_what_the_server_serves() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let channel = || {
        cpis_mesh::client::raw_channel(
            format!("https://localhost:{}", test.server.addr.port())
                .parse()
                .unwrap(),
            &pki.tls(&ehr),
            "localhost".try_into().unwrap(),
            &Default::default(),
        )
    };
    let expected = [
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(
        listed_services!(tonic_reflection::pb::v1, channel()),
        expected
    );
    assert_eq!(
        listed_services!(tonic_reflection::pb::v1alpha, channel()),
        expected
    );
}
