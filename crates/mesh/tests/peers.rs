//! Who may connect and call, over real sockets with real TLS: certificates, SPIFFE identities,
//! the per-RPC allow-list, the edge's forwarded client, and certificate rotation.

mod support;

use std::time::Duration;

use cpis_mesh::authz::Caller;
use cpis_mesh::devpki::{DevCa, LeafSpec};
use cpis_mesh::testkit::{NAMESPACE, TRUST_DOMAIN, TestPki};
use cpis_proto::attendance::ListAttendancesRequest;
use cpis_proto::attendance::attendance_service_client::AttendanceServiceClient;
use support::{VALID_NHS_NUMBER, channel_with, check, client, eventually, rustls_client};
use tonic::Code;

/// Asserts that a call failed and that the server counted one handshake refused for `reason`.
/// (The client may see the server's alert or only the closed connection, depending on timing,
/// so the server's own account is what is checked.)
async fn assert_refused_in_handshake(
    status: &tonic::Status,
    test: &support::TestServer,
    reason: &str,
) {
    assert_ne!(status.code(), Code::Ok);
    let line = format!("cpis_tls_handshake_failures_total{{reason=\"{reason}\"}} 1");
    let admin = test.server.admin_addr;
    let counted = eventually(Duration::from_secs(5), || {
        let line = line.clone();
        async move { support::scrape(admin).await.contains(&line) }
    })
    .await;
    assert!(counted, "no `{line}` in {}", support::scrape(admin).await);
    assert!(test.observed.all().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_identity_is_served() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let answer = client(&pki, &ehr, test.server.addr.port())
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .expect("an organisation system may record an attendance");
    assert_eq!(answer.into_inner().check_id, "check-1");
    let seen = test.observed.last();
    let Some(Caller::OrgSystem { system, via_edge }) = seen.caller else {
        panic!("caller not resolved: {:?}", seen.caller)
    };
    assert_eq!(system.organisation.as_str(), "RJ1");
    assert_eq!(system.system, "ed-ehr");
    assert!(!via_edge);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_certificate_of_another_identity_is_denied_per_method() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let port = test.server.addr.port();

    // The audit service has a certificate from the same CA, but no rule admits it.
    let audit = pki.workload("audit");
    let status = client(&pki, &audit, port)
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // An organisation system may record but not list.
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let status = client(&pki, &ehr, port)
        .list_attendances(ListAttendancesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The notification service may list.
    let notification = pki.workload("notification");
    client(&pki, &notification, port)
        .list_attendances(ListAttendancesRequest::default())
        .await
        .expect("notification may list");

    // Refused calls never reached the handler.
    assert!(test.observed.all().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_a_certificate_fails_the_handshake() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let config = rustls_client(pki.ca.cert_pem(), None);
    let mut anonymous = AttendanceServiceClient::new(channel_with(config, test.server.addr.port()));
    let status = anonymous
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_refused_in_handshake(&status, &test, "no_client_certificate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let stranger_ca = DevCa::new(TRUST_DOMAIN).unwrap();
    let leaf = stranger_ca.org_system("RJ1", "ed-ehr").unwrap();
    // It trusts the server; the server does not trust it.
    let config = rustls_client(pki.ca.cert_pem(), Some((&leaf.cert_pem, &leaf.key_pem)));
    let status = AttendanceServiceClient::new(channel_with(config, test.server.addr.port()))
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_refused_in_handshake(&status, &test, "untrusted_certificate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_with_two_uri_sans_is_refused() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let leaf = pki
        .ca
        .issue(&LeafSpec {
            common_name: "ambiguous".into(),
            uris: vec![
                format!("spiffe://{TRUST_DOMAIN}/org/RJ1/system/ed-ehr"),
                format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/notification"),
            ],
            client: true,
            ..LeafSpec::default()
        })
        .unwrap();
    let config = rustls_client(pki.ca.cert_pem(), Some((&leaf.cert_pem, &leaf.key_pem)));
    let status = AttendanceServiceClient::new(channel_with(config, test.server.addr.port()))
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_refused_in_handshake(&status, &test, "identity").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_port_serves_nothing_in_plaintext() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let plaintext = tonic::transport::Endpoint::from_shared(format!("http://{}", test.server.addr))
        .unwrap()
        .connect_lazy();
    let status = AttendanceServiceClient::new(plaintext)
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert!(test.observed.all().is_empty());
}

fn with_forwarded(uri: &str) -> tonic::Request<cpis_proto::attendance::RecordAttendanceRequest> {
    let mut request = tonic::Request::new(check(VALID_NHS_NUMBER));
    request.metadata_mut().insert(
        "x-forwarded-client-cert",
        format!("By=spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/edge;Hash=00ff;URI={uri}")
            .parse()
            .unwrap(),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_client_header_from_a_non_edge_peer_is_ignored() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let port = test.server.addr.port();
    let impostor = format!("spiffe://{TRUST_DOMAIN}/org/ZZZ/system/forged");

    // An organisation system cannot pose as another one.
    let ehr = pki.org_system("RJ1", "ed-ehr");
    client(&pki, &ehr, port)
        .record_attendance(with_forwarded(&impostor))
        .await
        .expect("the call itself is allowed");
    let seen = test.observed.last();
    assert_eq!(seen.caller.unwrap().describe(), "org:RJ1/ed-ehr");
    assert!(
        !seen.forwarded_header_visible,
        "the header must not reach handlers"
    );

    // A mesh service cannot pose as an organisation system to gain its rights.
    let audit = pki.workload("audit");
    let status = client(&pki, &audit, port)
        .record_attendance(with_forwarded(&impostor))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_speaks_for_the_organisation_system_it_verified() {
    let pki = TestPki::new();
    let test = support::start(&pki).await;
    let edge = pki.workload("edge");
    let forwarded = format!("spiffe://{TRUST_DOMAIN}/org/RJ2/system/ward-ehr");
    client(&pki, &edge, test.server.addr.port())
        .record_attendance(with_forwarded(&forwarded))
        .await
        .expect("the edge forwards an organisation system");
    let seen = test.observed.last();
    let Some(Caller::OrgSystem { system, via_edge }) = seen.caller else {
        panic!("caller not resolved: {:?}", seen.caller)
    };
    assert_eq!(system.organisation.as_str(), "RJ2");
    assert!(via_edge);

    // Without the header the edge is only the edge, which may not record attendances.
    let status = client(&pki, &edge, test.server.addr.port())
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn replaced_certificate_files_are_used_without_restart_or_dropped_connections() {
    let pki = TestPki::new();
    let config = pki.mesh_config("attendance");
    let server_dir = config.tls.cert_file.parent().unwrap().to_owned();
    let test = support::start_with(config, Vec::new()).await;
    let port = test.server.addr.port();

    // A client of the first CA holds a connection open.
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let mut old_client = client(&pki, &ehr, port);
    old_client
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .expect("served before rotation");

    // A client of a second CA is refused while the server holds the first CA's certificate.
    let new_ca = DevCa::new(TRUST_DOMAIN).unwrap();
    let new_leaf = new_ca.org_system("RJ2", "ward-ehr").unwrap();
    let new_config = rustls_client(
        new_ca.cert_pem(),
        Some((&new_leaf.cert_pem, &new_leaf.key_pem)),
    );
    let status = AttendanceServiceClient::new(channel_with(new_config.clone(), port))
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // Rotate the server onto the second CA by replacing its files.
    let server_leaf = new_ca.workload(NAMESPACE, "attendance").unwrap();
    new_ca.write_bundle(&server_dir, &server_leaf).unwrap();

    let rotated = eventually(Duration::from_secs(10), || {
        let config = new_config.clone();
        async move {
            AttendanceServiceClient::new(channel_with(config, port))
                .record_attendance(check(VALID_NHS_NUMBER))
                .await
                .is_ok()
        }
    })
    .await;
    assert!(rotated, "the new certificate was not picked up");

    // The connection made before the rotation still works: it was never dropped (a new one
    // could not be made, since the server no longer trusts the first CA).
    old_client
        .record_attendance(check(VALID_NHS_NUMBER))
        .await
        .expect("the established connection survives rotation");
}
