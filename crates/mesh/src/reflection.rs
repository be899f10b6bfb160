//! gRPC server reflection, in both protocols: v1, and v1alpha which grpcurl and other common
//! tools still speak. Each server lists only the services it serves.

use tonic::service::Routes;

/// Registers v1 and v1alpha reflection for `service_names` (fully qualified) and health.
pub fn add_reflection(
    routes: Routes,
    service_names: &[&str],
) -> Result<Routes, tonic_reflection::server::Error> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cpis_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in service_names {
            b = b.with_service_name(*name);
        }
        b
    };
    Ok(routes
        .add_service(builder().build_v1()?)
        .add_service(builder().build_v1alpha()?))
}
