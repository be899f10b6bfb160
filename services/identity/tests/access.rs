//! Which peers may call which RPC, over real mTLS: every RPC against every class of peer,
//! refused by the runtime's allow-list unless the contract names the peer.

mod support;

use cpis_mesh::client::MeshChannel;
use cpis_proto::identity::identity_service_client::IdentityServiceClient;
use cpis_proto::identity::*;
use support::{Backend, TestIdentity};
use tonic::{Code, Status};

type Client = IdentityServiceClient<MeshChannel>;

const RPCS: [&str; 15] = [
    "IssueToken",
    "GetSigningKeys",
    "Authorize",
    "GetOrganisation",
    "ListOrganisations",
    "TracePerson",
    "TracePeople",
    "CreateUser",
    "DisableUser",
    "ListUsers",
    "CreateRoleProfile",
    "DisableRoleProfile",
    "ImportDirectory",
    "ExportDirectory",
    "ImportPersons",
];

/// Calls `rpc` with an empty request; the status, or OK.
async fn call(mut client: Client, rpc: &str) -> Status {
    let result = match rpc {
        "IssueToken" => client
            .issue_token(IssueTokenRequest::default())
            .await
            .map(|_| ()),
        "GetSigningKeys" => client
            .get_signing_keys(GetSigningKeysRequest {})
            .await
            .map(|_| ()),
        "Authorize" => client
            .authorize(AuthorizeRequest::default())
            .await
            .map(|_| ()),
        "GetOrganisation" => client
            .get_organisation(GetOrganisationRequest::default())
            .await
            .map(|_| ()),
        "ListOrganisations" => client
            .list_organisations(ListOrganisationsRequest::default())
            .await
            .map(|_| ()),
        "TracePerson" => client
            .trace_person(TracePersonRequest::default())
            .await
            .map(|_| ()),
        "TracePeople" => client
            .trace_people(TracePeopleRequest::default())
            .await
            .map(|_| ()),
        "CreateUser" => client
            .create_user(CreateUserRequest::default())
            .await
            .map(|_| ()),
        "DisableUser" => client
            .disable_user(DisableUserRequest::default())
            .await
            .map(|_| ()),
        "ListUsers" => client
            .list_users(ListUsersRequest::default())
            .await
            .map(|_| ()),
        "CreateRoleProfile" => client
            .create_role_profile(CreateRoleProfileRequest::default())
            .await
            .map(|_| ()),
        "DisableRoleProfile" => client
            .disable_role_profile(DisableRoleProfileRequest::default())
            .await
            .map(|_| ()),
        "ImportDirectory" => client
            .import_directory(ImportDirectoryRequest::default())
            .await
            .map(|_| ()),
        "ExportDirectory" => client
            .export_directory(ExportDirectoryRequest {})
            .await
            .map(|_| ()),
        "ImportPersons" => client
            .import_persons(futures_util::stream::iter(
                Vec::<ImportPersonsRequest>::new(),
            ))
            .await
            .map(|_| ()),
        other => panic!("unknown RPC {other}"),
    };
    result.err().unwrap_or_else(|| Status::ok(""))
}

/// Whether the contract admits `peer` to `rpc`.
fn admitted(peer: &str, rpc: &str) -> bool {
    let service = matches!(peer, "attendance" | "flag-registry" | "audit");
    let outside = matches!(peer, "edge" | "org");
    match rpc {
        "IssueToken" => outside,
        "GetSigningKeys" => service,
        "Authorize" | "GetOrganisation" | "ListOrganisations" => true,
        "TracePerson" | "TracePeople" => peer == "flag-registry",
        _ => outside,
    }
}

async fn a_peer_not_on_an_rpcs_allow_list_is_refused(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let peers = [
        ("edge", test.service_client("edge")),
        ("org", test.org_client("RJ1", "ehr")),
        ("attendance", test.service_client("attendance")),
        ("flag-registry", test.service_client("flag-registry")),
        ("audit", test.service_client("audit")),
    ];
    for (peer, client) in &peers {
        for rpc in RPCS {
            let status = call(client.clone(), rpc).await;
            let refused_by_policy = status.code() == Code::PermissionDenied
                && status.message().contains("may not call");
            assert_eq!(
                !refused_by_policy,
                admitted(peer, rpc),
                "{peer} calling {rpc}: {status:?}"
            );
        }
    }
    // Admitted to an admin RPC without a token: UNAUTHENTICATED, before anything is read.
    let status = call(peers[1].1.clone(), "ListUsers").await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

async fn an_admin_rpc_needs_the_directory_admin_activity(backend: Backend) {
    let test = TestIdentity::start(backend).await;
    let nurse = test.sign_in("nurse.jones", "").await.access_token;
    let status = test
        .org_client("RJ1", "ehr")
        .list_users(support::with_token(ListUsersRequest::default(), &nurse))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("directory.admin"), "{status:?}");
    let admin = test.admin_token().await;
    let users = test
        .org_client("RJ1", "ehr")
        .list_users(support::with_token(ListUsersRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.users.len(), 4);
}

both_stores!(
    a_peer_not_on_an_rpcs_allow_list_is_refused,
    an_admin_rpc_needs_the_directory_admin_activity,
);
