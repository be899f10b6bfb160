//! The exported descriptor set holds the complete API of DESIGN.md and the issues:
//! every service with every RPC, the right streaming shapes, and a comment on every
//! element (what it means and who may call it).

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto};

/// Every service and its RPCs, as the design and the issues name them.
const EXPECTED: [(&str, &[&str]); 5] = [
    (
        "cpis.identity.v1.IdentityService",
        &[
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
        ],
    ),
    (
        "cpis.flags.v1.FlagRegistryService",
        &[
            "UpsertFlag",
            "EndFlag",
            "GetFlags",
            "ListFlags",
            "GetUploadReport",
            "BulkUpload",
        ],
    ),
    (
        "cpis.attendance.v1.AttendanceService",
        &["RecordAttendance", "ListAttendances"],
    ),
    (
        "cpis.notification.v1.NotificationService",
        &[
            "Publish",
            "ListNotifications",
            "AcknowledgeNotifications",
            "Subscribe",
            "RegisterWebhook",
            "ListWebhooks",
            "RotateWebhookSecret",
            "UnregisterWebhook",
            "ListWebhookDeliveries",
            "ListDeliveryAttempts",
        ],
    ),
    (
        "cpis.audit.v1.AuditService",
        &[
            "Append",
            "QueryEvents",
            "GetCheckpoint",
            "GetInclusionProof",
            "GetConsistencyProof",
        ],
    ),
];

/// The RPCs that stream, as (service, method, client streaming, server streaming).
const STREAMING: [(&str, &str, bool, bool); 3] = [
    (
        "cpis.identity.v1.IdentityService",
        "ImportPersons",
        true,
        false,
    ),
    (
        "cpis.flags.v1.FlagRegistryService",
        "BulkUpload",
        true,
        false,
    ),
    (
        "cpis.notification.v1.NotificationService",
        "Subscribe",
        false,
        true,
    ),
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(cpis_proto::FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET decodes as a google.protobuf.FileDescriptorSet")
}

fn cpis_files(fds: &FileDescriptorSet) -> impl Iterator<Item = &FileDescriptorProto> {
    fds.file
        .iter()
        .filter(|file| file.package().starts_with("cpis."))
}

/// Every service in the set, by fully-qualified name, with its methods by name.
fn services(fds: &FileDescriptorSet) -> BTreeMap<String, BTreeMap<String, MethodDescriptorProto>> {
    cpis_files(fds)
        .flat_map(|file| {
            file.service.iter().map(move |service| {
                let methods = service
                    .method
                    .iter()
                    .map(|method| (method.name().to_owned(), method.clone()))
                    .collect();
                (format!("{}.{}", file.package(), service.name()), methods)
            })
        })
        .collect()
}

#[test]
fn every_service_has_exactly_the_expected_rpcs() {
    let services = services(&descriptor_set());
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    let mut expected_names: Vec<&str> = EXPECTED.iter().map(|(service, _)| *service).collect();
    expected_names.sort_unstable();
    assert_eq!(names, expected_names);

    for (service, rpcs) in EXPECTED {
        let methods = &services[service];
        let mut expected: Vec<&str> = rpcs.to_vec();
        expected.sort_unstable();
        let actual: Vec<&str> = methods.keys().map(String::as_str).collect();
        assert_eq!(actual, expected, "RPCs of {service}");

        // buf STANDARD: a request and a response message of its own per RPC.
        let package = service.rsplit_once('.').map_or("", |(package, _)| package);
        for (name, method) in methods {
            assert_eq!(method.input_type(), format!(".{package}.{name}Request"));
            assert_eq!(method.output_type(), format!(".{package}.{name}Response"));
        }
    }
}

#[test]
fn streaming_rpcs_stream_the_right_way_and_the_others_are_unary() {
    let services = services(&descriptor_set());
    for (service, methods) in &services {
        for (name, method) in methods {
            let expected = STREAMING
                .iter()
                .find(|(s, m, _, _)| s == service && m == name)
                .map_or((false, false), |(_, _, client, server)| (*client, *server));
            assert_eq!(
                (method.client_streaming(), method.server_streaming()),
                expected,
                "{service}/{name}: (client streaming, server streaming)"
            );
        }
    }
}

#[test]
fn service_names_match_the_descriptor_set() {
    let services = services(&descriptor_set());
    for name in cpis_proto::SERVICE_NAMES {
        assert!(
            services.contains_key(name),
            "{name} is not in the descriptor set"
        );
    }
    let expected: Vec<&str> = EXPECTED.iter().map(|(service, _)| *service).collect();
    assert_eq!(cpis_proto::SERVICE_NAMES.to_vec(), expected);
}

#[test]
fn only_well_known_types_are_imported_from_outside() {
    for file in &descriptor_set().file {
        let name = file.name();
        assert!(
            name.starts_with("cpis/") || name.starts_with("google/protobuf/"),
            "unexpected file {name} in the descriptor set"
        );
    }
}

/// Source-info paths (descriptor.proto field numbers) of the elements that must be
/// commented: services (6) and their methods (2); messages (4), their fields (2) and
/// oneofs (8); enums (5) and their values (2).
fn commentable_paths(file: &FileDescriptorProto) -> Vec<(Vec<i32>, String)> {
    let mut paths = Vec::new();
    for (s, service) in (0_i32..).zip(&file.service) {
        paths.push((vec![6, s], service.name().to_owned()));
        for (m, method) in (0_i32..).zip(&service.method) {
            paths.push((
                vec![6, s, 2, m],
                format!("{}.{}", service.name(), method.name()),
            ));
        }
    }
    for (m, message) in (0_i32..).zip(&file.message_type) {
        paths.push((vec![4, m], message.name().to_owned()));
        for (f, field) in (0_i32..).zip(&message.field) {
            paths.push((
                vec![4, m, 2, f],
                format!("{}.{}", message.name(), field.name()),
            ));
        }
        for (o, oneof) in (0_i32..).zip(&message.oneof_decl) {
            // proto3 `optional` fields are synthetic oneofs, named after the field with a
            // leading underscore: they carry no comment of their own.
            if !oneof.name().starts_with('_') {
                paths.push((
                    vec![4, m, 8, o],
                    format!("{}.{}", message.name(), oneof.name()),
                ));
            }
        }
    }
    for (e, enumeration) in (0_i32..).zip(&file.enum_type) {
        paths.push((vec![5, e], enumeration.name().to_owned()));
        for (v, value) in (0_i32..).zip(&enumeration.value) {
            paths.push((vec![5, e, 2, v], value.name().to_owned()));
        }
    }
    paths
}

#[test]
fn every_element_is_commented() {
    let mut missing = Vec::new();
    let mut checked = 0_usize;
    for file in cpis_files(&descriptor_set()) {
        let comments: BTreeMap<&[i32], &str> = file
            .source_code_info
            .as_ref()
            .expect("source info is kept in the descriptor set")
            .location
            .iter()
            .map(|location| (location.path.as_slice(), location.leading_comments()))
            .collect();
        for (path, element) in commentable_paths(file) {
            checked += 1;
            let comment = comments.get(path.as_slice()).copied().unwrap_or_default();
            if comment.trim().is_empty() {
                missing.push(format!("{}: {element}", file.name()));
            }
        }
    }
    assert!(
        checked > 500,
        "only {checked} elements: is the source info missing?"
    );
    assert!(
        missing.is_empty(),
        "elements without a leading comment: {missing:#?}"
    );
}

#[test]
fn the_rpc_comments_name_their_callers() {
    for file in cpis_files(&descriptor_set()) {
        let Some(info) = file.source_code_info.as_ref() else {
            continue;
        };
        for location in &info.location {
            if let [6, _, 2, _] = location.path.as_slice() {
                assert!(
                    location.leading_comments().contains("Callers:"),
                    "{}: an RPC comment without `Callers:`: {}",
                    file.name(),
                    location.leading_comments()
                );
            }
        }
    }
}

#[test]
fn generated_clients_and_servers_exist() {
    use cpis_proto::{attendance, audit, flags, identity, notification};

    // Naming the types is the test: it fails to compile when one is missing.
    let clients = [
        std::any::type_name::<
            identity::identity_service_client::IdentityServiceClient<tonic::transport::Channel>,
        >(),
        std::any::type_name::<
            flags::flag_registry_service_client::FlagRegistryServiceClient<
                tonic::transport::Channel,
            >,
        >(),
        std::any::type_name::<
            attendance::attendance_service_client::AttendanceServiceClient<
                tonic::transport::Channel,
            >,
        >(),
        std::any::type_name::<
            notification::notification_service_client::NotificationServiceClient<
                tonic::transport::Channel,
            >,
        >(),
        std::any::type_name::<
            audit::audit_service_client::AuditServiceClient<tonic::transport::Channel>,
        >(),
    ];
    assert!(clients.iter().all(|name| name.contains("Client")));
}

#[test]
fn a_bulk_upload_stream_message_round_trips() {
    use cpis_proto::common::{NhsNumber, OdsCode};
    use cpis_proto::flags::{
        BulkUploadRequest, UploadHeader, UploadMode, bulk_upload_request::Content,
    };

    let header = BulkUploadRequest {
        content: Some(Content::Header(UploadHeader {
            authority: Some(cpis_proto::common::LocalAuthority {
                code: Some(OdsCode {
                    value: "E09000007".to_owned(),
                }),
                name: "London Borough of Camden".to_owned(),
            }),
            sequence_number: 7,
            record_count: 1,
            mode: UploadMode::Snapshot.into(),
            ..UploadHeader::default()
        })),
    };
    let decoded = BulkUploadRequest::decode(header.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, header);

    let record = BulkUploadRequest {
        content: Some(Content::Record(cpis_proto::flags::FlagRecord {
            case_reference: "CP-1".to_owned(),
            nhs_number: Some(NhsNumber {
                value: "9434765919".to_owned(),
            }),
            kind: cpis_proto::common::FlagKind::ChildProtectionPlan.into(),
            ..cpis_proto::flags::FlagRecord::default()
        })),
    };
    let decoded = BulkUploadRequest::decode(record.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, record);
}

#[test]
fn the_api_guide_lists_every_service_and_rpc() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
    )
    .expect("docs/api.md");
    for (service, methods) in services(&descriptor_set()) {
        assert!(
            guide.contains(&format!("### `{service}`")),
            "docs/api.md has no section for {service}"
        );
        for method in methods.keys() {
            assert!(
                guide.contains(&format!("| `{method}`")),
                "docs/api.md does not list {service}.{method}"
            );
        }
    }
}
