//! The `cpis-identity` binary: the identity service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cpis_mesh::run_main::<cpis_identity::Identity>().await
}
